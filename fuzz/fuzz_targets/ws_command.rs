//! The dashboard's WebSocket command parser: any text a client sends gets a command or
//! an error reply, and the reply is valid JSON.

#![no_main]

use alphapulse::dashboard::protocol::{error_message, parse_command, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // tungstenite hands the server only valid UTF-8 text messages.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_command(text) {
        Ok(Command::Subscribe(f) | Command::Unsubscribe(f)) => {
            let echo = f.to_json("subscribed").to_string();
            assert!(serde_json::from_str::<serde_json::Value>(&echo).is_ok());
        }
        Ok(Command::GetSignals(q)) => {
            assert!((1..=alphapulse::dashboard::MAX_LIST_LIMIT).contains(&q.limit));
        }
        Ok(Command::Ping(_)) => {}
        Err(why) => {
            assert!(!why.is_empty());
            let reply = error_message(&why);
            let v: serde_json::Value =
                serde_json::from_str(&reply).expect("error replies are JSON");
            assert_eq!(v["type"], "error");
        }
    }
});
