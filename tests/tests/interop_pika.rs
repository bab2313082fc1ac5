//! Interop with pika, the Python client, through the real RabbitMQ: pika reads intact what our
//! client publishes, and our client reads intact what pika publishes: every basic property,
//! every field-table type the other side can carry, and bodies of 0 B, 1 B and 1 MiB.
//! The Python side is `tests/interop/pika_peer.py`, run as a child process in the venv that
//! `scripts/python-env.sh` makes (target/pyenv, pika pinned in tests/interop/requirements.txt).
#![allow(clippy::unwrap_used)] // A test that fails says where, which is what unwrap does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use amqp_client::api::*;
use amqp_codec::table::Decimal;
use amqp_codec::{BasicProperties, FieldTable, FieldValue};
use bytes::Bytes;
use futures_util::StreamExt;
use tests::channel;
use tests::unique_name;

/// Leftover queues of a failed run go away by themselves after this long unused.
const QUEUE_EXPIRES_MS: i32 = 120_000;
const ONE_MIB: usize = 1 << 20;

#[tokio::test]
async fn pika_reads_every_property_header_type_and_body_size_our_client_publishes() {
    let (conn, ch) = channel().await;
    let queue = declare_shared_queue(&ch, "interop-to-pika").await;
    let headers = headers_pika_reads();
    let header_table: FieldTable = headers.iter().map(|(k, v, _)| (*k, v.clone())).collect();
    let long_id = "m".repeat(255);
    let empty = FieldTable::new();
    let sent: [(BasicProperties<'_>, Bytes); 4] = [
        (
            BasicProperties {
                content_type: Some("application/octet-stream"),
                content_encoding: Some("identity"),
                headers: Some((&header_table).into()),
                delivery_mode: Some(2),
                priority: Some(9),
                correlation_id: Some("corr-é"),
                reply_to: Some("replies"),
                expiration: Some("60000"),
                message_id: Some("m-1"),
                timestamp: Some(1_700_000_000),
                kind: Some("order.created"),
                user_id: Some("guest"), // RabbitMQ refuses a user-id other than the connection's user.
                app_id: Some("amqp-client-interop"),
                cluster_id: None, // Deprecated; RabbitMQ refuses a message that carries it.
            },
            Bytes::from_static(b"every property"),
        ),
        (BasicProperties::default(), Bytes::new()),
        (BasicProperties { delivery_mode: Some(1), ..Default::default() }, Bytes::from_static(b"\xff")),
        (
            BasicProperties {
                headers: Some((&empty).into()),
                priority: Some(0),
                message_id: Some(&long_id), // the longest short string
                timestamp: Some(u64::MAX),
                ..Default::default()
            },
            pattern(ONE_MIB),
        ),
    ];
    ch.confirm_select().await.unwrap();
    for (props, body) in &sent {
        let confirm = ch.basic_publish("", &queue, BasicPublishOptions::default(), props, body.clone()).await.unwrap();
        let verdict = tokio::time::timeout(Duration::from_secs(10), confirm.wait()).await.unwrap().unwrap();
        assert_eq!(verdict, Confirmation::Ack);
    }

    let out = run_peer(&["consume", &queue, &sent.len().to_string()]).await;
    let received: Vec<Vec<(String, Json)>> = out.lines().map(|line| fields(Json::parse(line))).collect();
    assert_eq!(received.len(), sent.len(), "pika printed:\n{out}");

    let expected_headers = dict(headers.iter().map(|(k, _, json)| (*k, json.clone())).collect());
    let expected = [
        vec![
            ("content_type", str_("application/octet-stream")),
            ("content_encoding", str_("identity")),
            ("headers", expected_headers),
            ("delivery_mode", int(2)),
            ("priority", int(9)),
            ("correlation_id", str_("corr-é")),
            ("reply_to", str_("replies")),
            ("expiration", str_("60000")),
            ("message_id", str_("m-1")),
            ("timestamp", int(1_700_000_000)),
            ("type", str_("order.created")),
            ("user_id", str_("guest")),
            ("app_id", str_("amqp-client-interop")),
        ],
        vec![],
        vec![("delivery_mode", int(1))],
        vec![
            ("headers", dict(vec![])),
            ("priority", int(0)),
            ("message_id", str_(&long_id)),
            ("timestamp", int(u64::MAX)),
        ],
    ];
    for (i, ((got, want), (_, body))) in received.iter().zip(&expected).zip(&sent).enumerate() {
        assert_properties_as_pika_saw_them(i, got, want);
        assert_body(&format!("message {i}"), &bytes_from_b64(field(got, "body")), body);
    }

    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn our_client_reads_every_property_header_type_and_body_size_pika_publishes() {
    let (conn, ch) = channel().await;
    let queue = declare_shared_queue(&ch, "interop-from-pika").await;
    let out = run_peer(&["publish", &queue]).await;
    assert_eq!(out.trim(), "4", "pika_peer.py publishes four messages");

    let headers: FieldTable = headers_pika_writes().into_iter().collect();
    let empty = FieldTable::new();
    let long_id = "m".repeat(255);
    // The same list as MESSAGES in pika_peer.py.
    let expected: [(BasicProperties<'_>, Bytes); 4] = [
        (
            BasicProperties {
                content_type: Some("application/json"),
                content_encoding: Some("gzip"),
                headers: Some((&headers).into()),
                delivery_mode: Some(2),
                priority: Some(7),
                correlation_id: Some("corr-ü"),
                reply_to: Some("replies"),
                expiration: Some("60000"),
                message_id: Some("msg-1"),
                timestamp: Some(1_700_000_000),
                kind: Some("order.created"),
                user_id: Some("guest"),
                app_id: Some("pika-peer"),
                cluster_id: None,
            },
            Bytes::from_static(b"hello from pika"),
        ),
        (BasicProperties::default(), Bytes::new()),
        (BasicProperties { delivery_mode: Some(1), ..Default::default() }, Bytes::from_static(b"\x00")),
        (
            BasicProperties {
                headers: Some((&empty).into()),
                priority: Some(0),
                message_id: Some(&long_id),
                timestamp: Some(u64::MAX),
                ..Default::default()
            },
            pattern(ONE_MIB),
        ),
    ];

    let options = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumer = ch.basic_consume(&queue, options, &FieldTable::new()).await.unwrap();
    for (i, (want, body)) in expected.iter().enumerate() {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("message {i} from pika did not arrive"))
            .unwrap();
        let got = delivery.properties();
        assert_headers(i, got.headers.map(|t| t.to_owned()), want.headers.map(|t| t.to_owned()));
        assert_eq!(BasicProperties { headers: None, ..got }, BasicProperties { headers: None, ..want.clone() });
        assert_body(&format!("message {i}"), delivery.body(), body);
    }

    consumer.cancel().await.unwrap();
    ch.queue_delete(&queue, QueueDeleteOptions::default()).await.unwrap();
    conn.close().await.unwrap();
}

/// One header per type in RabbitMQ's field-table type list, with the value pika 1.4.4's
/// `pika.data.decode_value` turns it into. Every type decodes; `f` and `d` lose their fraction,
/// since pika passes them through `int()`. Left out because pika fails on them, not us:
/// `f`/`d` NaN or infinity (`int()` raises, so pika drops the whole message with an error),
/// `T` past year 9999 (`datetime.fromtimestamp` overflows), and `D` with a value above
/// `i32::MAX` (pika reads the spec's unsigned 32-bit value as signed, so 3_000_000_000 comes
/// out as -1294967296).
fn headers_pika_reads() -> Vec<(&'static str, FieldValue, Json)> {
    let nested: FieldTable =
        [("inner", FieldValue::I64(-5)), ("deeper", FieldValue::Table([("x", false)].into_iter().collect()))]
            .into_iter()
            .collect();
    let nested_json = dict(vec![("inner", int(-5)), ("deeper", dict(vec![("x", boolean(false))]))]);
    let in_array: FieldTable = [("k", "v")].into_iter().collect();
    vec![
        ("t-true", FieldValue::Bool(true), boolean(true)),
        ("t-false", FieldValue::Bool(false), boolean(false)),
        ("b-min", FieldValue::I8(i8::MIN), int(i8::MIN)),
        ("b-max", FieldValue::I8(i8::MAX), int(i8::MAX)),
        ("B-max", FieldValue::U8(u8::MAX), int(u8::MAX)),
        ("s-min", FieldValue::I16(i16::MIN), int(i16::MIN)),
        ("u-max", FieldValue::U16(u16::MAX), int(u16::MAX)),
        ("I-min", FieldValue::I32(i32::MIN), int(i32::MIN)),
        ("I-max", FieldValue::I32(i32::MAX), int(i32::MAX)),
        ("i-max", FieldValue::U32(u32::MAX), int(u32::MAX)),
        ("l-min", FieldValue::I64(i64::MIN), int(i64::MIN)),
        ("l-max", FieldValue::I64(i64::MAX), int(i64::MAX)),
        // pika: int(struct.unpack('>f')), so the fraction goes (toward zero).
        ("f-whole", FieldValue::F32(-3.0), int(-3)),
        ("f-fraction", FieldValue::F32(1.75), int(1)),
        ("f-large", FieldValue::F32(16_777_216.0), int(16_777_216)),
        ("d-whole", FieldValue::F64(2f64.powi(70)), int("1180591620717411303424")),
        ("d-fraction", FieldValue::F64(-1234.5), int(-1234)),
        ("D", FieldValue::Decimal(Decimal { scale: 2, value: 12_345 }), decimal("123.45")),
        ("D-zero-scale", FieldValue::Decimal(Decimal { scale: 0, value: 7 }), decimal("7")),
        ("D-trailing-zero", FieldValue::Decimal(Decimal { scale: 2, value: 150 }), decimal("1.50")),
        ("D-i32-max", FieldValue::Decimal(Decimal { scale: 3, value: i32::MAX as u32 }), decimal("2147483.647")),
        ("D-tiny", FieldValue::Decimal(Decimal { scale: 10, value: 1 }), decimal("1E-10")),
        ("S", FieldValue::from("hello"), str_("hello")),
        ("S-utf8", FieldValue::from("café ☕ 日本"), str_("café ☕ 日本")),
        ("S-empty", FieldValue::from(""), str_("")),
        // pika hands back the bytes of a long string that is not UTF-8.
        ("S-not-utf8", FieldValue::LongString(Bytes::from_static(b"\xff\xfe")), bytes(b"\xff\xfe")),
        ("x", FieldValue::ByteArray(Bytes::from_static(b"\x00\x01\xfe\xff")), bytes(b"\x00\x01\xfe\xff")),
        ("x-empty", FieldValue::ByteArray(Bytes::new()), bytes(b"")),
        (
            "A",
            FieldValue::Array(vec![
                FieldValue::I32(1),
                FieldValue::from("two"),
                FieldValue::Bool(true),
                FieldValue::Void,
                FieldValue::U8(200),
                FieldValue::Timestamp(0),
                FieldValue::Array(vec![FieldValue::I64(5), FieldValue::Array(vec![])]),
                FieldValue::Table(in_array),
            ]),
            list(vec![
                int(1),
                str_("two"),
                boolean(true),
                none(),
                int(200),
                datetime("1970-01-01T00:00:00+00:00"),
                list(vec![int(5), list(vec![])]),
                dict(vec![("k", str_("v"))]),
            ]),
        ),
        ("A-empty", FieldValue::Array(vec![]), list(vec![])),
        ("T", FieldValue::Timestamp(1_700_000_000), datetime("2023-11-14T22:13:20+00:00")),
        ("T-epoch", FieldValue::Timestamp(0), datetime("1970-01-01T00:00:00+00:00")),
        ("F", FieldValue::Table(nested), nested_json),
        ("F-empty", FieldValue::Table(FieldTable::new()), dict(vec![])),
        ("V", FieldValue::Void, none()),
    ]
}

/// ALL_TYPES_HEADERS of pika_peer.py as the field values pika 1.4.4's encoder writes: str S,
/// bytes x, bool t, int I (l beyond 32 bits), pika.compat.long l, Decimal D (normalised),
/// datetime T (whole seconds, naive taken as UTC), dict F, list A, None V. pika has no
/// encoding for float, nor for b, B, s, u or i.
fn headers_pika_writes() -> Vec<(&'static str, FieldValue)> {
    let ts = FieldValue::Timestamp;
    let dec = |scale, value| FieldValue::Decimal(Decimal { scale, value });
    let table = |entries: Vec<(&str, FieldValue)>| FieldValue::Table(entries.into_iter().collect());
    vec![
        ("str", "hello".into()),
        ("str-utf8", "café ☕ 日本".into()),
        ("str-empty", "".into()),
        ("bytes", FieldValue::ByteArray(Bytes::from_static(b"\x00\x01\xfe\xff"))),
        ("bytes-empty", FieldValue::ByteArray(Bytes::new())),
        ("true", true.into()),
        ("false", false.into()),
        ("int", 42i32.into()),
        ("int-negative", (-7i32).into()),
        ("int-i32-max", i32::MAX.into()),
        ("int-i32-min", i32::MIN.into()),
        ("int-beyond-i32", (1i64 << 31).into()),
        ("int-below-i32", (-(1i64 << 31) - 1).into()),
        ("int-i64-max", i64::MAX.into()),
        ("int-i64-min", i64::MIN.into()),
        ("long", 5i64.into()),
        ("decimal", dec(2, 12_345)),
        ("decimal-trailing-zero", dec(1, 15)),
        ("decimal-integer", dec(0, 7)),
        ("decimal-exponent", dec(0, 1000)),
        ("decimal-max", dec(3, i32::MAX as u32)),
        ("datetime", ts(1_700_000_000)),
        ("datetime-naive", ts(1_000_000_000)),
        ("datetime-epoch", ts(0)),
        ("datetime-microseconds", ts(1_700_000_000)),
        ("table", table(vec![("a", 1i32.into()), ("b", "two".into()), ("nested", table(vec![("deep", true.into())]))])),
        ("table-empty", table(vec![])),
        (
            "array",
            FieldValue::Array(vec![
                1i32.into(),
                (1i64 << 40).into(),
                "two".into(),
                FieldValue::ByteArray(Bytes::from_static(b"\x03")),
                true.into(),
                FieldValue::Void,
                dec(1, 5),
                ts(1_700_000_000),
                FieldValue::Array(vec![false.into(), FieldValue::Array(vec![])]),
                table(vec![("k", "v".into())]),
            ]),
        ),
        ("array-empty", FieldValue::Array(vec![])),
        ("void", FieldValue::Void),
    ]
}

/// A queue pika's connection can use too (so not exclusive), that expires if a run dies.
async fn declare_shared_queue(ch: &Channel, prefix: &str) -> String {
    let mut arguments = FieldTable::new();
    arguments.insert("x-expires", QUEUE_EXPIRES_MS);
    let name = unique_name(prefix);
    ch.queue_declare(&name, QueueDeclareOptions::default(), &arguments).await.unwrap();
    name
}

/// Bytes 0, 1, ..., 250, 0, 1, ...: `pattern` in pika_peer.py.
fn pattern(size: usize) -> Bytes {
    (0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}

/// Compares pika's view of one message's 14 properties; those `want` omits must be None.
fn assert_properties_as_pika_saw_them(i: usize, got: &[(String, Json)], want: &[(&str, Json)]) {
    const NAMES: [&str; 14] = [
        "content_type",
        "content_encoding",
        "headers",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
        "cluster_id",
    ];
    for name in NAMES {
        let expected = want.iter().find(|(n, _)| *n == name).map_or_else(none, |(_, v)| v.clone());
        let actual = field(got, name);
        if let ("headers", Json::Arr(g), Json::Arr(w)) = (name, actual, &expected) {
            // Entry by entry first, so that a mismatch names its header.
            if let (Some(Json::Arr(g)), Some(Json::Arr(w))) = (g.get(1), w.get(1)) {
                for (k, w) in w.iter().enumerate() {
                    assert_eq!(g.get(k), Some(w), "message {i}: header entry {k} as pika decoded it");
                }
            }
        }
        assert_eq!(actual, &expected, "message {i}: property {name} as pika decoded it");
    }
}

fn assert_headers(i: usize, got: Option<FieldTable>, want: Option<FieldTable>) {
    let (Some(got), Some(want)) = (&got, &want) else {
        assert_eq!(got, want, "message {i}: headers");
        return;
    };
    for (key, value) in want.iter() {
        assert_eq!(got.get(key), Some(value), "message {i}: header {key:?}");
    }
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "message {i}: header keys in order");
}

/// Compares bodies without printing a megabyte when they differ.
fn assert_body(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(g, w)| g != w);
        panic!("{what}: body of {} bytes, expected {}; first difference at {first:?}", got.len(), want.len());
    }
}

fn field<'j>(fields: &'j [(String, Json)], name: &str) -> &'j Json {
    &fields.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("pika_peer printed no {name}")).1
}

/// A consume line, `[[name, value], ...]`, as pairs.
fn fields(line: Json) -> Vec<(String, Json)> {
    let Json::Arr(pairs) = line else { panic!("a message line is an array: {line:?}") };
    pairs
        .into_iter()
        .map(|pair| match pair {
            Json::Arr(mut p) if p.len() == 2 => {
                let value = p.pop().unwrap();
                let Json::Str(name) = p.pop().unwrap() else { panic!("a field name is a string") };
                (name, value)
            }
            other => panic!("a field is [name, value]: {other:?}"),
        })
        .collect()
}

fn bytes_from_b64(tagged: &Json) -> Vec<u8> {
    match tagged {
        Json::Arr(v) if v.len() == 2 && v[0] == Json::Str("bytes".into()) => {
            let Json::Str(b64) = &v[1] else { panic!("base64 is a string") };
            base64_decode(b64)
        }
        other => panic!("expected [\"bytes\", base64], got {other:?}"),
    }
}

// What pika_peer.py prints: each Python value tagged with its type, as strings and arrays.

fn tagged(tag: &str, value: impl Into<String>) -> Json {
    Json::Arr(vec![Json::Str(tag.into()), Json::Str(value.into())])
}

fn str_(s: &str) -> Json {
    tagged("str", s)
}

fn int(n: impl std::fmt::Display) -> Json {
    tagged("int", n.to_string())
}

fn boolean(b: bool) -> Json {
    tagged("bool", b.to_string())
}

fn decimal(repr: &str) -> Json {
    tagged("decimal", repr)
}

fn datetime(iso: &str) -> Json {
    tagged("datetime", iso)
}

fn bytes(b: &[u8]) -> Json {
    tagged("bytes", base64_encode(b))
}

fn none() -> Json {
    Json::Arr(vec![Json::Str("none".into())])
}

fn list(values: Vec<Json>) -> Json {
    Json::Arr(vec![Json::Str("list".into()), Json::Arr(values)])
}

fn dict(entries: Vec<(&str, Json)>) -> Json {
    let pairs = entries.into_iter().map(|(k, v)| Json::Arr(vec![str_(k), v])).collect();
    Json::Arr(vec![Json::Str("dict".into()), Json::Arr(pairs)])
}

/// The only JSON pika_peer.py prints: strings and arrays.
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Str(String),
    Arr(Vec<Json>),
}

impl Json {
    /// Parses with serde_json and keeps the two shapes pika_peer.py prints.
    fn parse(text: &str) -> Json {
        fn from(value: serde_json::Value) -> Json {
            match value {
                serde_json::Value::String(s) => Json::Str(s),
                serde_json::Value::Array(items) => Json::Arr(items.into_iter().map(from).collect()),
                other => panic!("pika_peer.py prints only strings and arrays, got {other}"),
            }
        }
        from(serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}")))
    }
}

/// Standard base64 with padding, as Python's `base64.b64encode`.
fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

fn base64_decode(input: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(input).expect("base64 from pika_peer.py")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, made (once per test process) by scripts/python-env.sh.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("bash")
            .arg("scripts/python-env.sh")
            .current_dir(workspace_root())
            .output()
            .expect("run bash scripts/python-env.sh");
        assert!(
            out.status.success(),
            "scripts/python-env.sh failed ({}); the pika interop tests need Python 3 and PyPI:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(stdout.lines().last().expect("python-env.sh prints the venv's python"))
    })
}

/// Runs pika_peer.py with the broker's address and `args`, and returns what it printed. The
/// script ends itself after 60 s, so a stuck peer fails the test rather than hanging it.
async fn run_peer(args: &[&str]) -> String {
    let mut command = Command::new(python());
    command.arg(workspace_root().join("tests/interop/pika_peer.py")).arg(tests::broker_addr()).args(args);
    let described = format!("{command:?}");
    let out = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("start pika_peer.py");
    assert!(out.status.success(), "{described} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("pika_peer.py prints ASCII JSON")
}

#[test]
fn the_test_helpers_base64_and_json_agree_with_python() {
    // Python: base64.b64encode(b"\x00\x01\xfe\xff") and json.dumps(["caf\u00e9 \U0001F600\n"]).
    assert_eq!(base64_encode(b"\x00\x01\xfe\xff"), "AAH+/w==");
    assert_eq!(base64_encode(b"ab"), "YWI=");
    assert_eq!(base64_decode("AAH+/w=="), b"\x00\x01\xfe\xff");
    assert_eq!(base64_decode(&base64_encode(&pattern(1000))), &pattern(1000)[..]);
    let parsed = Json::parse(r#"["caf\u00e9 \ud83d\ude00\n", []]"#);
    assert_eq!(parsed, Json::Arr(vec![Json::Str("café 😀\n".into()), Json::Arr(vec![])]));
}
