//! `api-warden`: the operator's command for what the filter's configuration needs, using the
//! filter's own code. Run `api-warden help` for the subcommands.
#![allow(clippy::print_stdout)]

use api_warden::admin::{self, registry};
use std::io::Read;
use std::process::ExitCode;

const USAGE: &str = "\
api-warden: administration for the api-warden filter

  api-warden create-client <client-id> [--endpoint PATTERN]... [--level LEVEL]
        new API key and signing secret (shown once) and the client entry for the configuration
  api-warden rotate-key <client-id> [--expire-old-at UNIX]
        a new API key and its api_keys entry (keep the old entry until clients moved)
  api-warden hash-key <api-key>
        the SHA-256 the configuration stores for a key
  api-warden mint-jwt --secret SECRET --client ID [--audience AUD] [--ttl SECONDS] [--scope S]...
        an HS256 token for a client (the seed's generate_jwt_token), with a random jti
  api-warden revoke-token <jti>
        the configuration change that refuses a token from now on

With --redis URL (redis://host:port), the client registry in Redis is written instead
(the filter's \"registry\" section reads it; --prefix P matches its key_prefix):
  api-warden create-client <client-id> --redis URL [--endpoint P]... [--level L] [--scope S]...
                           [--expires-at UNIX]
        its api_clients entry and an API key (shown once; stored as its SHA-256)
  api-warden rotate-key <client-id> --redis URL [--expires-at UNIX]
        one more key for the client (revoke the old one once its callers moved)
  api-warden revoke-key <api-key|sha256> --redis URL
  api-warden deactivate-client <client-id> --redis URL   (activate-client to undo)
  api-warden revoke-token <jti> --redis URL [--ttl SECONDS]
        refused with token_revoked for SECONDS (default 86400: use at least its remaining life)

  api-warden sign --client ID --secret SECRET --method METHOD --url URL [--body FILE]
                  [--scheme rfc9421|seed] [--curl]
        the signature headers for a request (or the curl command that sends it)
";

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("no randomness from /dev/urandom: {e}"))?;
    Ok(buf)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `--name value` options (repeatable) and positional arguments.
struct Args {
    positional: Vec<String>,
    options: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    fn parse(raw: &[String], flags: &[&str]) -> Result<Args, String> {
        let mut args = Args {
            positional: Vec::new(),
            options: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if flags.contains(&name) {
                    args.flags.push(name.to_string());
                } else {
                    let value = it.next().ok_or(format!("--{name} needs a value"))?;
                    args.options.push((name.to_string(), value.clone()));
                }
            } else {
                args.positional.push(a.clone());
            }
        }
        Ok(args)
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn need(&self, name: &str) -> Result<&str, String> {
        self.one(name).ok_or(format!("--{name} is required"))
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.options
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn first(&self, what: &str) -> Result<&str, String> {
        self.positional
            .first()
            .map(String::as_str)
            .ok_or(format!("{what} is required"))
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Sends registry writes to Redis, in order.
fn write_registry(url: &str, commands: &[registry::Command]) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
    let mut con = client
        .get_connection()
        .map_err(|e| format!("cannot reach Redis at {url}: {e}"))?;
    for c in commands {
        let Some((name, args)) = c.split_first() else {
            continue;
        };
        redis::cmd(name)
            .arg(args)
            .query::<redis::Value>(&mut con)
            .map_err(|e| format!("Redis refused {name}: {e}"))?;
    }
    Ok(())
}

fn read_registry(url: &str, command: &registry::Command) -> Result<Option<String>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
    let mut con = client
        .get_connection()
        .map_err(|e| format!("cannot reach Redis at {url}: {e}"))?;
    let Some((name, args)) = command.split_first() else {
        return Ok(None);
    };
    redis::cmd(name)
        .arg(args)
        .query::<Option<String>>(&mut con)
        .map_err(|e| format!("Redis refused {name}: {e}"))
}

fn unix(args: &Args, name: &str) -> Result<Option<u64>, String> {
    args.one(name)
        .map(|t| {
            t.parse::<u64>()
                .map_err(|_| format!("--{name}: Unix seconds"))
        })
        .transpose()
}

/// The subcommands that write the registry (with `--redis`).
fn registry_command(command: &str, args: &Args, url: &str) -> Result<String, String> {
    let prefix = args.one("prefix").unwrap_or("");
    match command {
        "create-client" => {
            let id = args.first("<client-id>")?;
            let mut endpoints = args.all("endpoint");
            if endpoints.is_empty() {
                endpoints.push("/api/*".into());
            }
            let key = admin::api_key_from(&random()?);
            let writes = registry::create_client(
                prefix,
                id,
                &endpoints,
                args.one("level").unwrap_or("standard"),
                &args.all("scope"),
                &key,
                unix(args, "expires-at")?,
            )?;
            write_registry(url, &writes)?;
            Ok(format!(
                "API key (shown once): {key}\nClient {id} and its key are in the registry ({url}).\n"
            ))
        }
        "rotate-key" => {
            let id = args.first("<client-id>")?;
            if read_registry(url, &registry::read_client(prefix, id))?.is_none() {
                return Err(format!("no client {id:?} in the registry"));
            }
            let key = admin::api_key_from(&random()?);
            let key_id = format!("{id}-{}", now());
            let write = registry::add_key(prefix, id, &key_id, &key, unix(args, "expires-at")?)?;
            write_registry(url, &[write])?;
            Ok(format!(
                "New API key (shown once): {key}\nThe old key works until `api-warden revoke-key`.\n"
            ))
        }
        "revoke-key" => {
            write_registry(
                url,
                &[registry::revoke_key(prefix, args.first("<api-key>")?)],
            )?;
            Ok(
                "The key is revoked (proxies stop accepting it within registry.cache_seconds).\n"
                    .into(),
            )
        }
        "deactivate-client" | "activate-client" => {
            let id = args.first("<client-id>")?;
            let current = read_registry(url, &registry::read_client(prefix, id))?
                .ok_or(format!("no client {id:?} in the registry"))?;
            let active = command == "activate-client";
            write_registry(url, &[registry::set_active(prefix, id, &current, active)?])?;
            Ok(format!(
                "Client {id} is now {}.\n",
                if active { "active" } else { "inactive" }
            ))
        }
        "revoke-token" => {
            let ttl = match args.one("ttl") {
                Some(t) => t.parse::<u64>().map_err(|_| "--ttl: seconds")?,
                None => 86_400,
            };
            write_registry(
                url,
                &[registry::revoke_token(prefix, args.first("<jti>")?, ttl)?],
            )?;
            Ok(format!("The token is revoked for {ttl} s.\n"))
        }
        other => Err(format!("{other} does not take --redis\n\n{USAGE}")),
    }
}

fn run(raw: &[String]) -> Result<String, String> {
    let Some((command, rest)) = raw.split_first() else {
        return Ok(USAGE.to_string());
    };
    let args = Args::parse(rest, &["curl"])?;
    if let Some(url) = args.one("redis") {
        return registry_command(command, &args, url);
    }
    match command.as_str() {
        "help" | "--help" | "-h" => Ok(USAGE.to_string()),
        "create-client" => {
            let id = args.first("<client-id>")?;
            let mut endpoints = args.all("endpoint");
            if endpoints.is_empty() {
                endpoints.push("/api/*".into());
            }
            let level = args.one("level").unwrap_or("standard");
            let c = admin::create_client(id, &endpoints, level, &random()?, &random()?);
            Ok(format!(
                "API key (shown once): {}\nSigning secret (shown once): {}\n\nAdd to \"clients\":\n{}\n",
                c.api_key,
                c.client_secret,
                pretty(&c.config)
            ))
        }
        "rotate-key" => {
            let id = args.first("<client-id>")?;
            let key = admin::api_key_from(&random()?);
            let expire = match args.one("expire-old-at") {
                Some(t) => Some(
                    t.parse::<u64>()
                        .map_err(|_| "--expire-old-at: Unix seconds")?,
                ),
                None => None,
            };
            let mut out = format!(
                "New API key (shown once): {key}\n\nAdd to the api_keys of {id}:\n{}\n",
                pretty(&admin::key_entry(&format!("{id}-{}", now()), &key, None))
            );
            if let Some(at) = expire {
                out.push_str(&format!(
                    "\nand give the old entry \"expires_at\": {at} (refused with api_key_expired after)\n"
                ));
            }
            Ok(out)
        }
        "hash-key" => Ok(format!("{}\n", admin::hash_key(args.first("<api-key>")?))),
        "mint-jwt" => {
            let ttl = match args.one("ttl") {
                Some(t) => t.parse::<u64>().map_err(|_| "--ttl: seconds")?,
                None => 3600,
            };
            let jti = hex::encode(random::<12>()?);
            let token = admin::mint_jwt(
                args.need("secret")?.as_bytes(),
                args.need("client")?,
                args.one("audience").unwrap_or("email-api"),
                &args.all("scope"),
                now(),
                ttl,
                &jti,
            )?;
            Ok(format!("{token}\n"))
        }
        "revoke-token" => {
            let jti = args.first("<jti>")?;
            Ok(format!(
                "Add to \"jwt\": \"revoked_jti\" (the token is refused with token_revoked):\n{}\n",
                serde_json::json!([jti])
            ))
        }
        "sign" => sign(&args),
        other => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    }
}

fn sign(args: &Args) -> Result<String, String> {
    let url = args.need("url")?;
    let method = args.need("method")?.to_ascii_uppercase();
    let (authority, target) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .map(|rest| {
            let i = rest.find('/').unwrap_or(rest.len());
            let target = if i == rest.len() { "/" } else { &rest[i..] };
            (&rest[..i], target)
        })
        .ok_or("--url must be http://host[:port]/path")?;
    let body = match args.one("body") {
        Some(file) => std::fs::read(file).map_err(|e| format!("--body {file}: {e}"))?,
        None => Vec::new(),
    };
    let client = args.need("client")?;
    let secret = args.need("secret")?.as_bytes();
    let headers = match args.one("scheme").unwrap_or("rfc9421") {
        "rfc9421" => {
            let nonce = hex::encode(random::<12>()?);
            admin::sign_rfc9421(
                secret,
                client,
                &method,
                authority,
                target,
                &body,
                now(),
                &nonce,
            )?
        }
        "seed" => admin::sign_seed(secret, client, &method, target, &body, now()),
        other => return Err(format!("--scheme: rfc9421 or seed, not {other:?}")),
    };
    if args.flags.iter().any(|f| f == "curl") {
        return Ok(format!(
            "{}\n",
            admin::curl(&method, url, &headers, args.one("body"))
        ));
    }
    Ok(headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect())
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    match run(&raw) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("api-warden: {e}");
            ExitCode::from(2)
        }
    }
}
