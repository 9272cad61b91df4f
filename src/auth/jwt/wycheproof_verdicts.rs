//! What every Wycheproof set must show, whichever check runs it: valid vectors accepted,
//! invalid ones refused ("acceptable" ones may go either way).

use wycheproof::TestResult;

/// Asserts each (accepted, expected result, vector id) and returns how many valid and invalid
/// vectors there were.
pub(super) fn expect_verdicts(
    set: &str,
    verdicts: impl IntoIterator<Item = (bool, TestResult, usize)>,
) -> (usize, usize) {
    let (mut valid, mut invalid) = (0, 0);
    for (accepted, result, id) in verdicts {
        match result {
            TestResult::Valid => {
                assert!(accepted, "{set} #{id}: a valid signature was refused");
                valid += 1;
            }
            TestResult::Invalid => {
                assert!(!accepted, "{set} #{id}: an invalid signature passed");
                invalid += 1;
            }
            TestResult::Acceptable => {}
        }
    }
    (valid, invalid)
}
