//! A node's Redis written as the previous release wrote it (layout version
//! 1, before the store kept indexes), for the upgrade tests: the begin,
//! commit and migration-fence scripts of that release, verbatim
//! (`layout_v1/*.lua`), driven with the arguments that release's SDK and
//! manager passed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{Connection, Script, Value};

static BEGIN: &str = include_str!("../layout_v1/begin.lua");
static COMMIT: &str = include_str!("../layout_v1/commit.lua");
static FENCE_OUT: &str = include_str!("../layout_v1/fence_out.lua");
static FINALIZE: &str = include_str!("../layout_v1/finalize.lua");

/// The version-1 keys of a session: meta, lock, data, reqs, resp (the tag
/// encoding has not changed since).
pub fn keys(session: &str) -> [String; 5] {
    let keys = edge_store::SessionKeys::new(session);
    let meta = keys.meta();
    let base = meta
        .strip_suffix("meta")
        .expect("a metadata key")
        .to_string();
    ["meta", "lock", "data", "reqs", "resp"].map(|suffix| format!("{base}{suffix}"))
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One blocking call of the version-1 SDK on node `node`, at `at_ms`:
/// begin (first contact creates the session), then, if the lock was taken,
/// the commit of `writes` (tagged values, as the SDK stored them) with the
/// request id and `retained` (the retained response). Returns the begin
/// script's first answer (`acquired`, `completed`, `moved`, `locked`).
pub fn blocking_call(
    redis: &mut Connection,
    node: &str,
    session: &str,
    request_id: &str,
    writes: &[(&str, &[u8])],
    retained: Option<&[u8]>,
    at_ms: i64,
) -> String {
    let [meta, lock, data, reqs, resp] = keys(session);
    let token = uuid::Uuid::new_v4().simple().to_string();
    let begin: Vec<Value> = Script::new(BEGIN)
        .key(&meta)
        .key(&lock)
        .key(&reqs)
        .key(&resp)
        .arg(node)
        .arg(&token)
        .arg(30_000)
        .arg(request_id)
        .arg(iso(at_ms))
        .invoke(redis)
        .expect("the version-1 begin script");
    let tag = match begin.first() {
        Some(Value::BulkString(tag)) => String::from_utf8_lossy(tag).into_owned(),
        other => panic!("unexpected begin answer {other:?}"),
    };
    if tag != "acquired" {
        return tag;
    }
    let script = Script::new(COMMIT);
    let mut commit = script.prepare_invoke();
    commit
        .key(&meta)
        .key(&lock)
        .key(&data)
        .key(&reqs)
        .key(&resp)
        .arg(&token)
        .arg(node)
        .arg(request_id)
        .arg(iso(at_ms))
        .arg(at_ms)
        .arg(Duration::from_secs(86_400).as_millis() as u64)
        .arg(1000)
        .arg(if retained.is_some() { "1" } else { "0" })
        .arg(retained.unwrap_or(b""));
    for (field, value) in writes {
        commit.arg("s").arg(*field).arg(*value);
    }
    let committed: i64 = commit.invoke(redis).expect("the version-1 commit script");
    assert_eq!(committed, 1, "the version-1 commit did not take");
    tag
}

/// The version-1 manager's fence of `session` on `node` for a migration
/// away (as a crash mid-migration leaves it). Returns the new epoch.
pub fn fence_out(redis: &mut Connection, node: &str, session: &str, at_ms: i64) -> u64 {
    let [meta, lock, ..] = keys(session);
    let reply: Vec<Value> = Script::new(FENCE_OUT)
        .key(&meta)
        .key(&lock)
        .arg(node)
        .arg(format!("migration:{}", uuid::Uuid::new_v4().simple()))
        .arg(60_000)
        .arg(at_ms)
        .invoke(redis)
        .expect("the version-1 fence script");
    match reply.get(1) {
        Some(Value::BulkString(epoch)) => String::from_utf8_lossy(epoch).parse().unwrap(),
        other => panic!("unexpected fence answer {other:?}"),
    }
}

/// The version-1 manager's last step at the source of a migration that
/// went to `new_location`: the data goes, a stub stays.
pub fn finalize(redis: &mut Connection, session: &str, epoch: u64, new_location: &str) {
    let [meta, lock, data, reqs, resp] = keys(session);
    let reply: String = Script::new(FINALIZE)
        .key(&meta)
        .key(&data)
        .key(&reqs)
        .key(&resp)
        .key(&lock)
        .arg(epoch)
        .arg(new_location)
        .invoke(redis)
        .expect("the version-1 finalize script");
    assert_eq!(reply, "ok");
}
