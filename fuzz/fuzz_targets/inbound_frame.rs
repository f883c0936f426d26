//! `fhircast::message::parse_inbound`: every text frame a subscriber sends
//! on its WebSocket (ACKs, mostly).
#![no_main]

use fhircast::message::{parse_inbound, Inbound};
use fhircast::AckStatus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Inbound::Ack(ack) = parse_inbound(text) {
        match ack.status {
            AckStatus::Success(code) => assert!((200..300).contains(&code)),
            AckStatus::Failure(code) => assert!(!(200..300).contains(&code)),
        }
    }
});
