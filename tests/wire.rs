//! The Binance frame parser against the documented payloads, a real capture, hostile
//! input, and a counting allocator that proves it allocates nothing once warm.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::str::FromStr;

use alphapulse::market::{Decimal, Interval, Level, Symbol};
use alphapulse::wire::{
    DepthUpdate, Event, Message, ParseError, Parser, PartialDepth, ReplyResult, RequestId, TimeUnit,
};
use common::{fixture, fixtures_dir};

// ---------------------------------------------------------------------------------------
// Counting allocator: counts allocations made by the current thread while it is armed, so
// tests running in parallel on other threads do not disturb the count.

struct CountingAllocator;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` because the allocator can run while a thread's locals are torn down.
    let armed = ARMED.try_with(Cell::get).unwrap_or(false);
    if armed {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations made by this thread while running `f`.
fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    ALLOCATIONS.with(Cell::get)
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Same value and same scale (`Decimal`'s `==` ignores the scale).
#[track_caller]
fn assert_decimal(actual: Decimal, expected: &str) {
    assert_eq!(actual.to_string(), expected);
}

#[track_caller]
fn assert_levels(actual: &[Level], expected: &[(&str, &str)]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?}");
    for (level, (price, quantity)) in actual.iter().zip(expected) {
        assert_decimal(level.price, price);
        assert_decimal(level.quantity, quantity);
    }
}

fn sym(text: &str) -> Symbol {
    Symbol::new(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The same frame behind one leading space: still the same JSON, but no longer in
/// Binance's exact layout, so the parser's fast path declines it and simd-json decodes
/// it. Comparing a frame with its spaced twin compares the two paths.
fn general_path_twin(frame: &[u8]) -> Vec<u8> {
    let mut twin = Vec::with_capacity(frame.len() + 1);
    twin.push(b' ');
    twin.extend_from_slice(frame);
    twin
}

/// Parses `text` through both paths of a fresh parser in `time_unit`, checks that they
/// agree, and hands each message to `check`.
fn with_message_in(time_unit: TimeUnit, text: &str, check: impl Fn(Message<'_>)) {
    let mut parser = Parser::new(time_unit);
    let mut frame = text.as_bytes().to_vec();
    let mut twin = general_path_twin(text.as_bytes());
    let mut general = Parser::new(time_unit);
    match (parser.parse(&mut frame), general.parse(&mut twin)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "the two paths differ");
            check(a);
            check(b);
        }
        (a, b) => panic!("{text}: {a:?} / {b:?}"),
    }
    assert_eq!(general.stats.fast_path_frames, 0);
}

fn with_message(text: &str, check: impl Fn(Message<'_>)) {
    with_message_in(TimeUnit::Millisecond, text, check);
}

fn parse_err(text: &[u8]) -> ParseError {
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut frame = text.to_vec();
    match parser.parse(&mut frame) {
        Ok(message) => panic!("{:?} parsed as {message:?}", String::from_utf8_lossy(text)),
        Err(e) => e,
    }
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The 265 frames of the capture, with their receive times.
fn captured_frames() -> Vec<(f64, String)> {
    let path = fixtures_dir().join("captured/binance-spot-2021-10-12.ws.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text.lines();
    let url = lines.next().unwrap_or_default();
    assert!(
        url.starts_with("wss://"),
        "line 1 is the connect URL: {url}"
    );
    lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (time, frame) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("no `<time>: ` prefix: {line}"));
            let time = time.parse().unwrap_or_else(|e| panic!("{time}: {e}"));
            (time, frame.to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The documented payloads, field by field.

#[test]
fn kline_fixture_decodes_field_by_field() {
    with_message(&fixture_text("kline.json"), |message| {
        let Message::Event {
            stream: None,
            event: Event::Kline(c),
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(c.symbol, sym("BNBBTC"));
        assert_eq!(c.interval, Interval::M1);
        assert_eq!(c.open_time_ms, 1_672_515_780_000);
        assert_eq!(c.close_time_ms, 1_672_515_839_999);
        assert_decimal(c.open, "0.0010");
        assert_decimal(c.close, "0.0020");
        assert_decimal(c.high, "0.0025");
        assert_decimal(c.low, "0.0015");
        assert_decimal(c.volume, "1000");
        assert_decimal(c.quote_volume, "1.0000");
        assert_decimal(c.taker_buy_base, "500");
        assert_decimal(c.taker_buy_quote, "0.500");
        assert_eq!(c.trades, 100);
        assert_eq!(c.first_trade_id, 100);
        assert_eq!(c.last_trade_id, 200);
        assert!(!c.closed);
        assert_eq!(c.event_time_us, 1_672_515_782_136_000);
    });
}

#[test]
fn kline_in_microseconds_keeps_record_times_in_milliseconds() {
    let text = fixture_text("kline.json")
        .replace("1672515782136", "1672515782136789")
        .replace("1672515780000", "1672515780000000")
        .replace("1672515839999", "1672515839999999");
    with_message_in(TimeUnit::Microsecond, &text, |message| {
        let Message::Event {
            event: Event::Kline(c),
            ..
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(c.event_time_us, 1_672_515_782_136_789);
        assert_eq!(c.open_time_ms, 1_672_515_780_000);
        assert_eq!(c.close_time_ms, 1_672_515_839_999);
    });
}

#[test]
fn trade_fixture_decodes_field_by_field() {
    with_message(&fixture_text("trade.json"), |message| {
        let Message::Event {
            stream: None,
            event: Event::Trade(t),
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(t.symbol, sym("BNBBTC"));
        assert_eq!(t.trade_id, 12345);
        assert_decimal(t.price, "0.001");
        assert_decimal(t.quantity, "100");
        assert_eq!(t.trade_time_ms, 1_672_515_782_136);
        assert!(t.buyer_is_maker);
        assert_eq!(t.event_time_us, 1_672_515_782_136_000);
    });
}

#[test]
fn trade_times_in_microseconds() {
    let text = fixture_text("trade.json").replace("1672515782136", "1672515782136123");
    with_message_in(TimeUnit::Microsecond, &text, |message| {
        let Message::Event {
            event: Event::Trade(t),
            ..
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(t.event_time_us, 1_672_515_782_136_123);
        assert_eq!(t.trade_time_ms, 1_672_515_782_136);
    });
}

#[test]
fn agg_trade_fixture_decodes_field_by_field() {
    with_message(&fixture_text("aggtrade.json"), |message| {
        let Message::Event {
            stream: None,
            event: Event::AggTrade(t),
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(t.symbol, sym("BNBBTC"));
        assert_eq!(t.agg_trade_id, 12345);
        assert_decimal(t.price, "0.001");
        assert_decimal(t.quantity, "100");
        assert_eq!(t.first_trade_id, 100);
        assert_eq!(t.last_trade_id, 105);
        assert_eq!(t.trade_time_ms, 1_672_515_782_136);
        assert!(t.buyer_is_maker);
        assert_eq!(t.event_time_us, 1_672_515_782_136_000);
    });
}

#[test]
fn book_ticker_fixture_is_recognised_by_its_shape() {
    with_message(&fixture_text("bookticker.json"), |message| {
        let Message::Event {
            stream: None,
            event: Event::BookTicker(b),
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(b.symbol, sym("BNBUSDT"));
        assert_eq!(b.update_id, 400_900_217);
        assert_decimal(b.bid_price, "25.35190000");
        assert_decimal(b.bid_qty, "31.21000000");
        assert_decimal(b.ask_price, "25.36520000");
        assert_decimal(b.ask_qty, "40.66000000");
    });
}

#[test]
fn diff_depth_fixture_decodes_field_by_field() {
    with_message(&fixture_text("diff_depth.json"), |message| {
        let Message::Event {
            stream: None,
            event: Event::DepthUpdate(d),
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(d.symbol, sym("BNBBTC"));
        assert_eq!(d.event_time_us, 1_672_515_782_136_000);
        assert_eq!(d.first_update_id, 157);
        assert_eq!(d.final_update_id, 160);
        assert_levels(d.bids, &[("0.0024", "10")]);
        assert_levels(d.asks, &[("0.0026", "100")]);
    });
}

#[test]
fn partial_depth_fixture_decodes_in_both_envelopes() {
    let raw = fixture_text("partial_depth.json");
    let check = |d: PartialDepth<'_>| {
        assert_eq!(d.last_update_id, 160);
        assert_levels(d.bids, &[("0.0024", "10")]);
        assert_levels(d.asks, &[("0.0026", "100")]);
    };
    with_message(&raw, |message| match message {
        Message::Event {
            stream: None,
            event: Event::PartialDepth(d),
        } => check(d),
        other => panic!("{other:?}"),
    });
    // On a combined stream the symbol is only in the stream name.
    let combined = format!(r#"{{"stream":"bnbbtc@depth5","data":{raw}}}"#);
    with_message(&combined, |message| match message {
        Message::Event {
            stream: Some("bnbbtc@depth5"),
            event: Event::PartialDepth(d),
        } => check(d),
        other => panic!("{other:?}"),
    });
}

#[test]
fn server_shutdown_fixtures_decode_raw_and_combined() {
    with_message(&fixture_text("servershutdown_raw_stream.json"), |message| {
        assert_eq!(
            message,
            Message::Event {
                stream: None,
                event: Event::ServerShutdown {
                    event_time_us: 1_770_123_456_789_000
                },
            }
        );
    });
    with_message(
        &fixture_text("servershutdown_combined_stream.json"),
        |message| {
            assert_eq!(
                message,
                Message::Event {
                    stream: Some("!serverShutdown"),
                    event: Event::ServerShutdown {
                        event_time_us: 1_770_123_456_789_000
                    },
                }
            );
        },
    );
}

#[test]
fn control_responses_decode() {
    for (name, expected_id) in [
        ("subscribe_response.json", 1),
        ("unsubscribe_response.json", 312),
        ("set_property_response.json", 5),
    ] {
        with_message(&fixture_text(name), |message| {
            assert_eq!(
                message,
                Message::Reply {
                    id: RequestId::Number(expected_id),
                    result: ReplyResult::Null,
                },
                "{name}"
            );
        });
    }
    with_message(&fixture_text("get_property_response.json"), |message| {
        assert_eq!(
            message,
            Message::Reply {
                id: RequestId::Number(2),
                result: ReplyResult::Bool(true),
            }
        );
    });
    with_message(
        &fixture_text("list_subscriptions_response.json"),
        |message| {
            let Message::Reply {
                id: RequestId::Number(3),
                result: ReplyResult::Streams(list),
            } = message
            else {
                panic!("{message:?}");
            };
            assert_eq!(list.iter().collect::<Vec<_>>(), ["btcusdt@aggTrade"]);
        },
    );
    with_message(
        r#"{"result":["btcusdt@aggTrade","btcusdt@depth","!serverShutdown"],"id":9}"#,
        |message| {
            let Message::Reply {
                result: ReplyResult::Streams(list),
                ..
            } = message
            else {
                panic!("{message:?}");
            };
            assert_eq!(
                list.iter().collect::<Vec<_>>(),
                ["btcusdt@aggTrade", "btcusdt@depth", "!serverShutdown"]
            );
        },
    );
    with_message(r#"{"result":[],"id":4}"#, |message| {
        let Message::Reply {
            result: ReplyResult::Streams(list),
            ..
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(list.iter().count(), 0);
    });
    // Binance echoes whatever id it got; only our numeric ids are matched.
    with_message(r#"{"result":false,"id":"abc"}"#, |message| {
        assert_eq!(
            message,
            Message::Reply {
                id: RequestId::Other,
                result: ReplyResult::Bool(false),
            }
        );
    });
    with_message(r#"{"result":null,"id":null}"#, |message| {
        assert_eq!(
            message,
            Message::Reply {
                id: RequestId::Other,
                result: ReplyResult::Null,
            }
        );
    });
}

#[test]
fn error_replies_decode_in_both_shapes() {
    let nested =
        r#"{"error":{"code":2,"msg":"Invalid request: property name must be a string"},"id":2}"#;
    with_message(nested, |message| {
        assert_eq!(
            message,
            Message::Error {
                id: Some(RequestId::Number(2)),
                code: 2,
                msg: "Invalid request: property name must be a string",
            }
        );
    });
    let flat = r#"{"code":2,"msg":"Invalid request: unknown variant `SUBSCRIB`","id":1}"#;
    with_message(flat, |message| {
        assert_eq!(
            message,
            Message::Error {
                id: Some(RequestId::Number(1)),
                code: 2,
                msg: "Invalid request: unknown variant `SUBSCRIB`",
            }
        );
    });
    for text in [
        r#"{"code":-1121,"msg":"Invalid symbol."}"#,
        r#"{"code":-1121,"msg":"Invalid symbol.","id":null}"#,
        r#"{"error":{"code":-1121,"msg":"Invalid symbol."}}"#,
        r#"{"error":{"code":-1121,"msg":"Invalid symbol."},"id":null}"#,
    ] {
        with_message(text, |message| {
            assert_eq!(
                message,
                Message::Error {
                    id: None,
                    code: -1121,
                    msg: "Invalid symbol.",
                },
                "{text}"
            );
        });
    }
    // Escapes in the message are resolved in place.
    with_message(
        r#"{"code":3,"msg":"bad \"x\"\n\u00e9","id":7}"#,
        |message| {
            assert!(matches!(
                message,
                Message::Error {
                    msg: "bad \"x\"\n\u{e9}",
                    ..
                }
            ));
        },
    );
}

/// Every file of the fixture folder has an expectation here, so a new fixture cannot
/// go unchecked; the ones not covered above are the client requests and REST bodies.
#[test]
fn every_fixture_file_has_an_expected_outcome() {
    let covered = [
        "kline.json",
        "trade.json",
        "aggtrade.json",
        "bookticker.json",
        "diff_depth.json",
        "partial_depth.json",
        "servershutdown_raw_stream.json",
        "servershutdown_combined_stream.json",
        "subscribe_response.json",
        "unsubscribe_response.json",
        "set_property_response.json",
        "get_property_response.json",
        "list_subscriptions_response.json",
    ];
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.ends_with(".json").then_some(name)
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 20, "{names:?}");
    for name in &names {
        let bytes = fixture(name);
        let mut parser = Parser::new(TimeUnit::Millisecond);
        let mut frame = bytes.clone();
        let outcome = parser.parse(&mut frame);
        if covered.contains(&name.as_str()) {
            assert!(outcome.is_ok(), "{name}: {outcome:?}");
            assert_eq!(parser.stats.unknown_fields, 0, "{name}");
        } else if name.ends_with("_request.json") {
            // What we send is not something a server sends us.
            assert_eq!(outcome, Err(ParseError::MissingField("e")), "{name}");
        } else if name == "rest_depth_response.json" {
            // The REST snapshot has the partial-depth shape and decodes as one.
            let Ok(Message::Event {
                event: Event::PartialDepth(d),
                ..
            }) = outcome
            else {
                panic!("{name}: {outcome:?}");
            };
            assert_eq!(d.last_update_id, 1_027_024);
            assert_levels(d.bids, &[("4.00000000", "431.00000000")]);
            assert_levels(d.asks, &[("4.00000200", "12.00000000")]);
        } else if name == "rest_klines_response.json" {
            assert_eq!(outcome, Err(ParseError::NotObject), "{name}");
        } else {
            panic!("no expectation for fixture {name}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The real capture.

/// What the independent reader (serde_json) says a captured frame is.
fn independent_kind(frame: &serde_json::Value) -> &'static str {
    let data = &frame["data"];
    match data.get("e").and_then(|e| e.as_str()) {
        Some("depthUpdate") => "depthUpdate",
        Some("kline") => "kline",
        Some("aggTrade") => "aggTrade",
        Some("trade") => "trade",
        Some(_) => "other",
        None if data.get("lastUpdateId").is_some() => "partialDepth",
        None if data.get("u").is_some() && data.get("b").is_some() => "bookTicker",
        None => "other",
    }
}

fn json_str<'v>(v: &'v serde_json::Value, key: &str) -> &'v str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` not a string in {v}"))
}

fn json_u64(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` not a u64 in {v}"))
}

fn json_i64(v: &serde_json::Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("`{key}` not an i64 in {v}"))
}

#[track_caller]
fn assert_json_levels(actual: &[Level], expected: &serde_json::Value) {
    let expected = expected.as_array().unwrap_or_else(|| panic!("{expected}"));
    assert_eq!(actual.len(), expected.len());
    for (level, pair) in actual.iter().zip(expected) {
        assert_decimal(level.price, pair[0].as_str().unwrap_or_default());
        assert_decimal(level.quantity, pair[1].as_str().unwrap_or_default());
    }
}

/// Every field we decode equals what serde_json reads from the same frame.
fn assert_agrees_with_serde_json(message: &Message<'_>, json: &serde_json::Value) {
    let Message::Event { stream, event } = message else {
        panic!("not an event: {message:?}");
    };
    assert_eq!(*stream, Some(json_str(json, "stream")));
    let d = &json["data"];
    match event {
        Event::Kline(c) => {
            let k = &d["k"];
            assert_eq!(c.symbol.as_str(), json_str(d, "s"));
            assert_eq!(c.interval.as_str(), json_str(k, "i"));
            assert_eq!(c.event_time_us, json_i64(d, "E") * 1000);
            assert_eq!(c.open_time_ms, json_i64(k, "t"));
            assert_eq!(c.close_time_ms, json_i64(k, "T"));
            for (value, key) in [
                (c.open, "o"),
                (c.high, "h"),
                (c.low, "l"),
                (c.close, "c"),
                (c.volume, "v"),
                (c.quote_volume, "q"),
                (c.taker_buy_base, "V"),
                (c.taker_buy_quote, "Q"),
            ] {
                assert_decimal(value, json_str(k, key));
            }
            assert_eq!(c.trades, json_u64(k, "n"));
            assert_eq!(c.first_trade_id, json_i64(k, "f"));
            assert_eq!(c.last_trade_id, json_i64(k, "L"));
            assert_eq!(Some(c.closed), k["x"].as_bool());
        }
        Event::AggTrade(t) => {
            assert_eq!(t.symbol.as_str(), json_str(d, "s"));
            assert_eq!(t.agg_trade_id, json_u64(d, "a"));
            assert_decimal(t.price, json_str(d, "p"));
            assert_decimal(t.quantity, json_str(d, "q"));
            assert_eq!(t.first_trade_id, json_u64(d, "f"));
            assert_eq!(t.last_trade_id, json_u64(d, "l"));
            assert_eq!(t.trade_time_ms, json_i64(d, "T"));
            assert_eq!(Some(t.buyer_is_maker), d["m"].as_bool());
            assert_eq!(t.event_time_us, json_i64(d, "E") * 1000);
        }
        Event::BookTicker(b) => {
            assert_eq!(b.symbol.as_str(), json_str(d, "s"));
            assert_eq!(b.update_id, json_u64(d, "u"));
            assert_decimal(b.bid_price, json_str(d, "b"));
            assert_decimal(b.bid_qty, json_str(d, "B"));
            assert_decimal(b.ask_price, json_str(d, "a"));
            assert_decimal(b.ask_qty, json_str(d, "A"));
        }
        Event::DepthUpdate(u) => {
            assert_eq!(u.symbol.as_str(), json_str(d, "s"));
            assert_eq!(u.event_time_us, json_i64(d, "E") * 1000);
            assert_eq!(u.first_update_id, json_u64(d, "U"));
            assert_eq!(u.final_update_id, json_u64(d, "u"));
            assert_json_levels(u.bids, &d["b"]);
            assert_json_levels(u.asks, &d["a"]);
        }
        other => panic!("the capture holds no {other:?}"),
    }
}

fn our_kind(event: &Event<'_>) -> &'static str {
    match event {
        Event::Kline(_) => "kline",
        Event::Trade(_) => "trade",
        Event::AggTrade(_) => "aggTrade",
        Event::BookTicker(_) => "bookTicker",
        Event::DepthUpdate(_) => "depthUpdate",
        Event::PartialDepth(_) => "partialDepth",
        Event::ServerShutdown { .. } | Event::Unknown { .. } => "other",
    }
}

#[test]
fn every_captured_frame_parses_and_agrees_with_serde_json() {
    let frames = captured_frames();
    assert_eq!(frames.len(), 265);
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut general = Parser::new(TimeUnit::Millisecond);
    general.set_fast_path(false);
    let mut ours: HashMap<&str, u32> = HashMap::new();
    let mut independent: HashMap<&str, u32> = HashMap::new();
    for (_, text) in &frames {
        let json: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        *independent.entry(independent_kind(&json)).or_default() += 1;
        let mut frame = text.as_bytes().to_vec();
        let message = parser
            .parse(&mut frame)
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        let Message::Event { event, .. } = &message else {
            panic!("{message:?}");
        };
        *ours.entry(our_kind(event)).or_default() += 1;
        assert_agrees_with_serde_json(&message, &json);
        let mut same = text.as_bytes().to_vec();
        match general.parse(&mut same) {
            Ok(slow) => {
                assert_agrees_with_serde_json(&slow, &json);
                assert_eq!(format!("{slow:?}"), format!("{message:?}"));
            }
            Err(e) => panic!("{e}: {text}"),
        }
    }
    assert_eq!(ours, independent);
    // The figures the serde_json scan gives, pinned so a silent change shows up.
    assert_eq!(ours.get("depthUpdate"), Some(&177));
    assert_eq!(ours.get("bookTicker"), Some(&84));
    assert_eq!(ours.get("kline"), Some(&2));
    assert_eq!(ours.get("aggTrade"), Some(&2));
    assert_eq!(ours.len(), 4);
    assert_eq!(parser.stats.frames, 265);
    // Every real frame is in Binance's exact layout, so all took the fast path.
    assert_eq!(parser.stats.fast_path_frames, 265);
    assert_eq!(parser.stats.errors, 0);
    assert_eq!(parser.stats.unknown_fields, 0);
    assert_eq!(parser.stats.unknown_events, 0);
    assert_eq!(general.stats.fast_path_frames, 0);
    assert_eq!(general.stats.errors, 0);
    assert_eq!(general.stats.unknown_fields, 0);
}

#[test]
fn captured_depth_diffs_have_no_gaps_and_bridge_the_snapshots() {
    // REST snapshots taken with the capture (fixture README).
    let snapshots: HashMap<&str, u64> = [
        ("NKNUSDT", 499_869_752),
        ("BLZETH", 281_916_627),
        ("LRCBTC", 259_345_543),
        ("RUNEEUR", 15_602_511),
    ]
    .into_iter()
    .collect();
    let mut last_final: HashMap<String, u64> = HashMap::new();
    let mut bridged: HashMap<String, bool> = HashMap::new();
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut diffs = 0;
    for (_, text) in captured_frames() {
        let mut frame = text.into_bytes();
        let Ok(Message::Event {
            event:
                Event::DepthUpdate(DepthUpdate {
                    symbol,
                    first_update_id,
                    final_update_id,
                    ..
                }),
            ..
        }) = parser.parse(&mut frame)
        else {
            continue;
        };
        diffs += 1;
        let name = symbol.as_str().to_owned();
        assert!(first_update_id <= final_update_id, "{name}");
        if let Some(previous) = last_final.get(&name) {
            assert_eq!(first_update_id, previous + 1, "gap in {name}");
        }
        let snapshot = snapshots[name.as_str()];
        if first_update_id <= snapshot + 1 && snapshot < final_update_id {
            bridged.insert(name.clone(), true);
        }
        last_final.insert(name, final_update_id);
    }
    assert_eq!(diffs, 177);
    assert_eq!(last_final.len(), 4, "{last_final:?}");
    assert_eq!(bridged.len(), 4, "every book can be synced: {bridged:?}");
}

// ---------------------------------------------------------------------------------------
// Hostile and malformed input.

const TRADE: &str = r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#;

#[test]
fn empty_and_blank_frames_are_invalid_json() {
    for text in ["", " ", "\n\t "] {
        assert!(
            matches!(parse_err(text.as_bytes()), ParseError::Json(_)),
            "{text:?}"
        );
    }
}

#[test]
fn every_truncation_of_a_frame_is_invalid_json() {
    let text = fixture_text("kline.json");
    let text = text.trim_end();
    for end in 0..text.len() {
        let err = parse_err(&text.as_bytes()[..end]);
        assert!(matches!(err, ParseError::Json(_)), "{end}: {err:?}");
        assert_eq!(err.reason(), "invalid_json");
    }
}

#[test]
fn invalid_utf8_is_invalid_json() {
    let mut in_value = TRADE.as_bytes().to_vec();
    let at = TRADE.find("BNBBTC").unwrap_or_default();
    in_value[at] = 0xFF;
    let mut in_key = TRADE.as_bytes().to_vec();
    in_key[2] = 0xC3; // a lead byte with no continuation
    let overlong = br#"{"e":"\xC0\xAFtrade"}"#.to_vec();
    for frame in [in_value, in_key, overlong] {
        assert!(matches!(parse_err(&frame), ParseError::Json(_)));
    }
}

#[test]
fn numbers_out_of_range_are_rejected() {
    let cases: [(&str, &str, ParseError); 8] = [
        // Beyond i64 for a timestamp.
        (
            r#""E":1672515782136"#,
            r#""E":18446744073709551615"#,
            ParseError::OutOfRange("E"),
        ),
        // Fits i64 but not once turned into microseconds.
        (
            r#""E":1672515782136"#,
            r#""E":9223372036854775807"#,
            ParseError::OutOfRange("E"),
        ),
        (
            r#""E":1672515782136"#,
            r#""E":-1"#,
            ParseError::OutOfRange("E"),
        ),
        (r#""t":12345"#, r#""t":-12345"#, ParseError::OutOfRange("t")),
        // Beyond u64 is not a number simd-json represents at all.
        (
            r#""t":12345"#,
            r#""t":18446744073709551616"#,
            ParseError::Json(String::new()),
        ),
        (
            r#""t":12345"#,
            r#""t":1e400"#,
            ParseError::Json(String::new()),
        ),
        (
            r#""p":"0.001""#,
            r#""p":"79228162514264337593543950336""#,
            ParseError::OutOfRange("p"),
        ),
        (
            r#""q":"100""#,
            r#""q":"0.12345678901234567890123456789""#,
            ParseError::OutOfRange("q"),
        ),
    ];
    for (from, to, expected) in cases {
        let text = TRADE.replace(from, to);
        assert_ne!(text, TRADE);
        let err = parse_err(text.as_bytes());
        match expected {
            ParseError::Json(_) => assert!(matches!(err, ParseError::Json(_)), "{to}: {err:?}"),
            expected => assert_eq!(err, expected, "{to}"),
        }
    }
}

#[test]
fn negative_prices_and_quantities_are_out_of_range() {
    // (fixture, field as it stands, negative replacement, the field named in the error)
    let cases: [(&str, &str, &str, &str); 14] = [
        ("kline.json", r#""o":"0.0010""#, r#""o":"-0.0010""#, "o"),
        ("kline.json", r#""c":"0.0020""#, r#""c":"-0.0020""#, "c"),
        ("kline.json", r#""h":"0.0025""#, r#""h":"-0.0025""#, "h"),
        ("kline.json", r#""l":"0.0015""#, r#""l":"-0.0015""#, "l"),
        ("kline.json", r#""v":"1000""#, r#""v":"-1000""#, "v"),
        ("kline.json", r#""Q":"0.500""#, r#""Q":"-0.500""#, "Q"),
        ("trade.json", r#""p":"0.001""#, r#""p":"-0.001""#, "p"),
        ("trade.json", r#""q":"100""#, r#""q":"-100""#, "q"),
        // A sign on zero is still a sign Binance never sends.
        ("trade.json", r#""q":"100""#, r#""q":"-0""#, "q"),
        ("aggtrade.json", r#""p":"0.001""#, r#""p":"-0.001""#, "p"),
        (
            "bookticker.json",
            r#""b":"25.35190000""#,
            r#""b":"-25.35190000""#,
            "b",
        ),
        (
            "bookticker.json",
            r#""A":"40.66000000""#,
            r#""A":"-40.66000000""#,
            "A",
        ),
        (
            "diff_depth.json",
            r#"[["0.0024","10"]]"#,
            r#"[["-0.0024","10"]]"#,
            "b",
        ),
        (
            "partial_depth.json",
            r#"["0.0026","100"]"#,
            r#"["0.0026","-100"]"#,
            "asks",
        ),
    ];
    for (fixture_name, from, to, field) in cases {
        let good = fixture_text(fixture_name);
        let text = good.replace(from, to);
        assert_ne!(text, good, "{fixture_name}: {from} not found");
        // Both paths refuse it, with the same error.
        let err = parse_err(text.as_bytes());
        assert_eq!(err, ParseError::OutOfRange(field), "{fixture_name}: {to}");
        assert_eq!(err.reason(), "out_of_range");
        let mut general = Parser::new(TimeUnit::Millisecond);
        general.set_fast_path(false);
        let mut frame = text.into_bytes();
        assert_eq!(general.parse(&mut frame), Err(err), "{fixture_name}: {to}");
    }
    // Zero stays valid: a depth level of quantity 0 removes the level.
    let removal = fixture_text("diff_depth.json").replace(r#""10"]"#, r#""0.00000000"]"#);
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut frame = removal.into_bytes();
    assert!(parser.parse(&mut frame).is_ok());
}

#[test]
fn deep_nesting_is_rejected_without_recursion() {
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let in_event = format!(r#"{{"e":"trade","x":{arrays}}}"#);
    for text in [arrays, objects, in_event] {
        assert!(matches!(parse_err(text.as_bytes()), ParseError::Json(_)));
    }
}

#[test]
fn frames_over_the_limit_are_too_large() {
    let huge = format!(r#"{{"e":"trade","s":"{}"}}"#, "A".repeat(2 << 20));
    assert_eq!(parse_err(huge.as_bytes()), ParseError::TooLarge(huge.len()));
    // Exactly at the limit is still parsed (the padding is an unknown field).
    let head = r#"{"e":"serverShutdown","E":1,"pad":""#;
    let pad = Parser::MAX_FRAME_BYTES - head.len() - 2;
    let at_limit = format!(r#"{head}{}"}}"#, " ".repeat(pad));
    assert_eq!(at_limit.len(), Parser::MAX_FRAME_BYTES);
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut frame = at_limit.clone().into_bytes();
    assert!(matches!(
        parser.parse(&mut frame),
        Ok(Message::Event {
            event: Event::ServerShutdown { .. },
            ..
        })
    ));
    assert_eq!(parser.stats.unknown_fields, 1);
    let mut over = format!("{at_limit} ").into_bytes();
    assert_eq!(
        parser.parse(&mut over),
        Err(ParseError::TooLarge(Parser::MAX_FRAME_BYTES + 1))
    );
}

#[test]
fn wrong_types_name_the_field() {
    let kline = fixture_text("kline.json");
    let depth = fixture_text("diff_depth.json");
    let cases: Vec<(String, ParseError)> = vec![
        (
            TRADE.replace(r#""E":1672515782136"#, r#""E":"1672515782136""#),
            ParseError::WrongType("E"),
        ),
        (
            TRADE.replace(r#""m":true"#, r#""m":"true""#),
            ParseError::WrongType("m"),
        ),
        (
            TRADE.replace(r#""p":"0.001""#, r#""p":0.001"#),
            ParseError::WrongType("p"),
        ),
        (
            TRADE.replace(r#""p":"0.001""#, r#""p":"1e-3""#),
            ParseError::WrongType("p"),
        ),
        (
            TRADE.replace(r#""p":"0.001""#, r#""p":null"#),
            ParseError::WrongType("p"),
        ),
        (
            TRADE.replace(r#""t":12345"#, r#""t":12345.5"#),
            ParseError::WrongType("t"),
        ),
        (
            TRADE.replace(r#""s":"BNBBTC""#, r#""s":42"#),
            ParseError::WrongType("s"),
        ),
        (
            TRADE.replace(r#""s":"BNBBTC""#, r#""s":"BNB-BTC""#),
            ParseError::WrongType("s"),
        ),
        (
            TRADE.replace(r#""s":"BNBBTC""#, r#""s":"ABCDEFGHIJKLMNOPQRSTUVWXYZ""#),
            ParseError::OutOfRange("s"),
        ),
        (
            TRADE.replace(r#""e":"trade""#, r#""e":7"#),
            ParseError::WrongType("e"),
        ),
        (
            kline.replace(r#""k":{"#, r#""k":[{"#).replace("}}", "}]}"),
            ParseError::WrongType("k"),
        ),
        (
            kline.replace(r#""i":"1m""#, r#""i":"2m""#),
            ParseError::OutOfRange("i"),
        ),
        (
            kline.replace(r#""x":false"#, r#""x":0"#),
            ParseError::WrongType("x"),
        ),
        (
            depth.replace(r#""b":[["0.0024","10"]]"#, r#""b":{"0.0024":"10"}"#),
            ParseError::WrongType("b"),
        ),
        (
            depth.replace(r#"[["0.0024","10"]]"#, r#"[["0.0024"]]"#),
            ParseError::WrongType("b"),
        ),
        (
            depth.replace(r#"[["0.0024","10"]]"#, r#"[[0.0024,10]]"#),
            ParseError::WrongType("b"),
        ),
        (
            depth.replace(r#"[["0.0026","100"]]"#, r#"[["0.0026",["100"]]]"#),
            ParseError::WrongType("a"),
        ),
        (
            r#"{"stream":"x@trade","data":[1]}"#.to_owned(),
            ParseError::WrongType("data"),
        ),
        (
            r#"{"stream":7,"data":{}}"#.to_owned(),
            ParseError::WrongType("stream"),
        ),
        (
            r#"{"result":{"a":1},"id":1}"#.to_owned(),
            ParseError::WrongType("result"),
        ),
        (
            r#"{"result":["a",1],"id":1}"#.to_owned(),
            ParseError::WrongType("result"),
        ),
        (
            r#"{"result":null,"id":true}"#.to_owned(),
            ParseError::WrongType("id"),
        ),
        (
            r#"{"error":"bad","id":1}"#.to_owned(),
            ParseError::WrongType("error"),
        ),
        (
            r#"{"code":"2","msg":"x"}"#.to_owned(),
            ParseError::WrongType("code"),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_err(text.as_bytes()), expected, "{text}");
    }
}

#[test]
fn missing_fields_are_named() {
    let kline = fixture_text("kline.json");
    let cases: Vec<(String, ParseError)> = vec![
        (
            TRADE.replace(r#""p":"0.001","#, ""),
            ParseError::MissingField("p"),
        ),
        (
            TRADE.replace(r#""E":1672515782136,"#, ""),
            ParseError::MissingField("E"),
        ),
        (
            kline.replace(r#""o":"0.0010","#, ""),
            ParseError::MissingField("o"),
        ),
        (
            r#"{"stream":"btcusdt@trade"}"#.to_owned(),
            ParseError::MissingField("data"),
        ),
        (
            format!(r#"{{"data":{TRADE}}}"#),
            ParseError::MissingField("stream"),
        ),
        (
            r#"{"result":null}"#.to_owned(),
            ParseError::MissingField("id"),
        ),
        (
            r#"{"code":2,"id":1}"#.to_owned(),
            ParseError::MissingField("msg"),
        ),
        (
            r#"{"u":1,"s":"BNBUSDT"}"#.to_owned(),
            ParseError::MissingField("e"),
        ),
        ("{}".to_owned(), ParseError::MissingField("e")),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_err(text.as_bytes()), expected, "{text}");
    }
}

#[test]
fn non_objects_are_rejected() {
    for text in ["[1,2]", "42", r#""kline""#, "null", "true"] {
        assert_eq!(parse_err(text.as_bytes()), ParseError::NotObject, "{text}");
    }
}

#[test]
fn unknown_events_and_fields_are_counted_not_fatal() {
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut ticker =
        br#"{"stream":"btcusdt@ticker","data":{"e":"24hrTicker","E":1,"s":"BTCUSDT"}}"#.to_vec();
    match parser.parse(&mut ticker) {
        Ok(Message::Event {
            stream: Some("btcusdt@ticker"),
            event: Event::Unknown { event_type },
        }) => assert_eq!(event_type, "24hrTicker"),
        other => panic!("{other:?}"),
    }
    let mut trade = TRADE
        .replace(
            r#""M":true"#,
            r#""M":true,"X":"MARKET","extra":{"deep":[1,{"a":2}]}"#,
        )
        .into_bytes();
    assert!(matches!(
        parser.parse(&mut trade),
        Ok(Message::Event {
            event: Event::Trade(_),
            ..
        })
    ));
    let mut envelope = format!(r#"{{"stream":"bnbbtc@trade","data":{TRADE},"ts":1}}"#).into_bytes();
    assert!(parser.parse(&mut envelope).is_ok());
    let mut reply = br#"{"result":null,"id":1,"note":"x"}"#.to_vec();
    assert!(parser.parse(&mut reply).is_ok());
    assert_eq!(parser.stats.unknown_events, 1);
    assert_eq!(parser.stats.unknown_fields, 4);
    assert_eq!(parser.stats.errors, 0);
}

#[test]
fn escaped_strings_are_resolved_in_place() {
    let text = TRADE.replace(r#""s":"BNBBTC""#, r#""s":"BNB\u0042TC""#);
    with_message(&text, |message| {
        let Message::Event {
            event: Event::Trade(t),
            ..
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(t.symbol, sym("BNBBTC"));
    });
}

#[test]
fn fields_in_any_order_and_duplicates_take_the_last() {
    let text = r#"{"q":"100","m":false,"T":5,"p":"0.002","p":"0.003","t":9,"s":"bnbbtc","E":7,"e":"trade"}"#;
    with_message(text, |message| {
        let Message::Event {
            event: Event::Trade(t),
            ..
        } = message
        else {
            panic!("{message:?}");
        };
        assert_eq!(t.symbol, sym("BNBBTC"));
        assert_eq!(t.price, dec("0.003"));
        assert_eq!(t.trade_time_ms, 5);
        assert_eq!(t.event_time_us, 7000);
    });
}

/// Random byte damage to real frames: nothing panics, the parser keeps working, and
/// whenever the fast path accepts a damaged frame, the general path (fed the same frame
/// behind a space) decodes it to the same message; when either rejects, both do.
#[test]
fn damaged_frames_never_panic_and_both_paths_agree() {
    let mut originals: Vec<Vec<u8>> = captured_frames()
        .into_iter()
        .step_by(4)
        .map(|(_, text)| text.into_bytes())
        .collect();
    for name in [
        "kline.json",
        "trade.json",
        "aggtrade.json",
        "bookticker.json",
        "diff_depth.json",
        "partial_depth.json",
        "list_subscriptions_response.json",
    ] {
        originals.push(fixture(name));
    }
    // Structure breakers, and digits, letters and signs that keep the structure but
    // change values (the fast path's own validation is what these exercise).
    const DAMAGE: &[u8] = b"{}[]\",:.e\\ \x00\xff\x7f0123456789-+aZ";
    let mut rng = fastrand::Rng::with_seed(0xbad_f00d);
    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut general = Parser::new(TimeUnit::Millisecond);
    let (mut ok, mut rejected) = (0u32, 0u32);
    for _ in 0..30_000 {
        let mut frame = originals[rng.usize(0..originals.len())].clone();
        for _ in 0..rng.usize(1..3) {
            let at = rng.usize(0..frame.len());
            match rng.u8(0..8) {
                0 => frame.truncate(at),
                1 | 2 => frame.insert(at, DAMAGE[rng.usize(0..DAMAGE.len())]),
                _ => frame[at] = DAMAGE[rng.usize(0..DAMAGE.len())],
            }
            if frame.is_empty() {
                break;
            }
        }
        let mut twin = general_path_twin(&frame);
        let text = String::from_utf8_lossy(&frame).into_owned();
        match (parser.parse(&mut frame), general.parse(&mut twin)) {
            (Ok(a), Ok(b)) => {
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}");
                ok += 1;
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.reason(), b.reason(), "{text}");
                rejected += 1;
            }
            (a, b) => panic!("the paths disagree on {text}: {a:?} / {b:?}"),
        }
    }
    assert!(
        ok > 3_000 && rejected > 3_000,
        "ok {ok}, rejected {rejected}"
    );
    // Damaged frames the fast path still accepted, each checked against simd-json above.
    assert!(
        parser.stats.fast_path_frames > 2_000,
        "{}",
        parser.stats.fast_path_frames
    );
    let mut clean = fixture("kline.json");
    assert!(parser.parse(&mut clean).is_ok());
}

// ---------------------------------------------------------------------------------------
// No allocation per message once warm.

#[test]
fn parsing_allocates_nothing_once_warm() {
    let mut frames: Vec<Vec<u8>> = captured_frames()
        .into_iter()
        .map(|(_, text)| text.into_bytes())
        .collect();
    for name in [
        "kline.json",
        "trade.json",
        "aggtrade.json",
        "bookticker.json",
        "diff_depth.json",
        "partial_depth.json",
        "servershutdown_raw_stream.json",
        "servershutdown_combined_stream.json",
        "subscribe_response.json",
        "get_property_response.json",
        "list_subscriptions_response.json",
    ] {
        frames.push(fixture(name));
    }
    frames.push(br#"{"result":["a@trade","b@trade","c@depth","d@kline_1m"],"id":3}"#.to_vec());
    frames.push(br#"{"error":{"code":2,"msg":"Invalid request"},"id":2}"#.to_vec());
    frames.push(br#"{"code":2,"msg":"Invalid request","id":1}"#.to_vec());
    frames.push(br#"{"e":"24hrTicker","E":1,"s":"BTCUSDT"}"#.to_vec());
    let longest = frames.iter().map(Vec::len).max().unwrap_or(0);

    let mut parser = Parser::new(TimeUnit::Millisecond);
    let mut general = Parser::new(TimeUnit::Millisecond);
    general.set_fast_path(false);
    let mut work = vec![0u8; longest];
    let parse_all = |parser: &mut Parser, work: &mut [u8]| {
        let mut ok = 0u32;
        for frame in &frames {
            let buffer = &mut work[..frame.len()];
            buffer.copy_from_slice(frame);
            if std::hint::black_box(parser.parse(buffer)).is_ok() {
                ok += 1;
            }
        }
        ok
    };
    // Warm-up grows every scratch buffer to what these frames need.
    assert_eq!(parse_all(&mut parser, &mut work), frames.len() as u32);
    assert_eq!(parse_all(&mut general, &mut work), frames.len() as u32);

    let mut ok = 0;
    let allocations = allocations_during(|| {
        for _ in 0..50 {
            ok += parse_all(&mut parser, &mut work);
            ok += parse_all(&mut general, &mut work);
        }
    });
    assert_eq!(ok, 100 * frames.len() as u32);
    assert_eq!(allocations, 0, "allocations over {ok} warm frames");
    // Both paths were exercised.
    assert!(parser.stats.fast_path_frames > 50 * 265);
    assert_eq!(general.stats.fast_path_frames, 0);

    // The counter itself works: a fresh parser does allocate.
    let cold = allocations_during(|| {
        let mut fresh = Parser::new(TimeUnit::Millisecond);
        let mut frame = frames[0].clone();
        let _ = std::hint::black_box(fresh.parse(&mut frame));
    });
    assert!(cold > 0);
}
