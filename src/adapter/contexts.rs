//! Which context the host's callbacks are for: this VM's root and request contexts by the ids
//! the host gave them, and each callout still out by its token, with the context that made it.
//! Host-neutral (the proxy-wasm exports keep one per VM), so its rules are tested natively: an
//! answer reaches the context that made the call, once; an unknown id or token finds nothing;
//! a deleted context's calls are forgotten, so the table stays bounded.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// Context ids and callout tokens are numbers the host hands out (never the client's input),
/// so a multiplicative hash is enough, and cheaper than SipHash on every callback.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0.rotate_left(5) ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ById<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Hosts number HTTP and gRPC calls apart, so their tokens are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Http,
    Grpc,
}

/// The context an answer is for.
pub enum Owner<R, Q> {
    Root(u32, Rc<RefCell<R>>),
    Request(u32, Rc<RefCell<Q>>),
}

pub struct Contexts<R, Q> {
    roots: ById<Rc<RefCell<R>>>,
    requests: ById<Rc<RefCell<Q>>>,
    http_calls: ById<u32>,
    grpc_calls: ById<u32>,
}

impl<R, Q> Default for Contexts<R, Q> {
    fn default() -> Self {
        Self {
            roots: ById::default(),
            requests: ById::default(),
            http_calls: ById::default(),
            grpc_calls: ById::default(),
        }
    }
}

impl<R, Q> Contexts<R, Q> {
    pub fn add_root(&mut self, id: u32, root: R) {
        self.roots.insert(id, Rc::new(RefCell::new(root)));
    }

    pub fn add_request(&mut self, id: u32, request: Q) {
        self.requests.insert(id, Rc::new(RefCell::new(request)));
    }

    pub fn root(&self, id: u32) -> Option<Rc<RefCell<R>>> {
        self.roots.get(&id).cloned()
    }

    pub fn request(&self, id: u32) -> Option<Rc<RefCell<Q>>> {
        self.requests.get(&id).cloned()
    }

    fn calls(&mut self, kind: CallKind) -> &mut ById<u32> {
        match kind {
            CallKind::Http => &mut self.http_calls,
            CallKind::Grpc => &mut self.grpc_calls,
        }
    }

    /// The context `owner` made the call `token`.
    pub fn register_call(&mut self, kind: CallKind, token: u32, owner: u32) {
        self.calls(kind).insert(token, owner);
    }

    /// The context waiting for the answer to `token`, which is no longer out. `None`: no
    /// context waits for it (never made, answered already, or its context deleted).
    pub fn answer(&mut self, kind: CallKind, token: u32) -> Option<Owner<R, Q>> {
        let id = self.calls(kind).remove(&token)?;
        if let Some(request) = self.request(id) {
            return Some(Owner::Request(id, request));
        }
        self.root(id).map(|root| Owner::Root(id, root))
    }

    /// The host is done with context `id`; calls still out for it will not be answered (the
    /// host cancels them), so they are forgotten.
    pub fn delete(&mut self, id: u32) {
        if self.requests.remove(&id).is_none() {
            self.roots.remove(&id);
        }
        for calls in [&mut self.http_calls, &mut self.grpc_calls] {
            if calls.values().any(|owner| *owner == id) {
                calls.retain(|_, owner| *owner != id);
            }
        }
    }

    /// Contexts and calls held: what stays bounded.
    pub fn len(&self) -> (usize, usize) {
        (
            self.roots.len() + self.requests.len(),
            self.http_calls.len() + self.grpc_calls.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Contexts<&'static str, &'static str> {
        let mut t = Contexts::default();
        t.add_root(1, "root");
        t.add_request(2, "first");
        t.add_request(3, "second");
        t
    }

    fn owner(o: Option<Owner<&'static str, &'static str>>) -> Option<(u32, &'static str)> {
        o.map(|o| match o {
            Owner::Root(id, r) => (id, *r.borrow()),
            Owner::Request(id, q) => (id, *q.borrow()),
        })
    }

    #[test]
    fn an_answer_reaches_the_context_that_made_the_call_once() {
        let mut t = table();
        t.register_call(CallKind::Http, 7, 3);
        t.register_call(CallKind::Http, 8, 1);
        assert_eq!(owner(t.answer(CallKind::Http, 7)), Some((3, "second")));
        assert_eq!(owner(t.answer(CallKind::Http, 7)), None, "answered once");
        assert_eq!(owner(t.answer(CallKind::Http, 8)), Some((1, "root")));
        assert_eq!(owner(t.answer(CallKind::Http, 99)), None, "never made");
    }

    #[test]
    fn http_and_grpc_tokens_are_apart() {
        let mut t = table();
        t.register_call(CallKind::Http, 5, 2);
        t.register_call(CallKind::Grpc, 5, 3);
        assert_eq!(owner(t.answer(CallKind::Grpc, 5)), Some((3, "second")));
        assert_eq!(owner(t.answer(CallKind::Http, 5)), Some((2, "first")));
    }

    #[test]
    fn a_deleted_context_gets_no_answer_and_its_calls_are_forgotten() {
        let mut t = table();
        t.register_call(CallKind::Http, 7, 2);
        t.register_call(CallKind::Grpc, 8, 2);
        t.register_call(CallKind::Http, 9, 3);
        t.delete(2);
        assert!(t.request(2).is_none());
        assert_eq!(t.len(), (2, 1), "only the other request's call is left");
        assert_eq!(owner(t.answer(CallKind::Http, 7)), None);
        assert_eq!(owner(t.answer(CallKind::Http, 9)), Some((3, "second")));
        t.delete(1);
        assert!(t.root(1).is_none());
        t.delete(42);
        assert_eq!(t.len(), (1, 0));
    }

    #[test]
    fn many_requests_come_and_go_and_the_table_stays_bounded() {
        let mut t: Contexts<(), u32> = Contexts::default();
        t.add_root(1, ());
        for id in 2..10_002u32 {
            t.add_request(id, id);
            t.register_call(CallKind::Http, id, id);
            if id % 2 == 0 {
                // Half are answered, half deleted while their call is out.
                assert!(
                    matches!(t.answer(CallKind::Http, id), Some(Owner::Request(i, _)) if i == id)
                );
            }
            t.delete(id);
        }
        assert_eq!(t.len(), (1, 0));
    }
}
