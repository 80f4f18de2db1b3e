//! The field report's failures on the back-to-back bench: Legacy loses, Fixed does not.

use firmware_core::app::{ForumSketch, MultiClientReceiver};
use firmware_core::smoltcp::time::Duration;
use firmware_core::Policy;
use fwsim_tests::{nc_once, FIELD_MESSAGE, FORUM_PORT};

fn forum() -> Box<ForumSketch> {
    Box::new(ForumSketch::new(FORUM_PORT))
}

fn multi() -> Box<MultiClientReceiver> {
    Box::new(MultiClientReceiver::new(
        FORUM_PORT,
        5,
        Duration::from_secs(30),
        FIELD_MESSAGE.to_vec(),
    ))
}

#[test]
fn forum_sketch_legacy_loses_the_message_when_fin_arrives_before_drain() {
    let out = nc_once(Policy::LEGACY, forum(), 5);
    assert!(out.accepted, "the sketch took the connection");
    assert_eq!(out.read, b"", "Legacy must lose the 9 bytes");
}

#[test]
fn forum_sketch_fixed_delivers_the_message() {
    let out = nc_once(Policy::FIXED, forum(), 5);
    assert_eq!(out.read, FIELD_MESSAGE);
}

#[test]
fn multi_client_legacy_accepts_then_reads_nothing() {
    // Accepted before data and FIN arrive: logged as accepted, then disconnected without data.
    let out = nc_once(Policy::LEGACY, multi(), 5);
    assert!(out.accepted);
    assert_eq!(out.read, b"");
}

#[test]
fn multi_client_legacy_never_sees_a_connection_closed_before_accept() {
    // Data and FIN arrive before the first accept: the dead client leaves no trace.
    let out = nc_once(Policy::LEGACY, multi(), 0);
    assert!(!out.accepted, "the connection must leave no trace");
    assert_eq!(out.read, b"");
}

#[test]
fn multi_client_fixed_delivers_in_both_shapes() {
    for accept_loops in [0, 5] {
        let out = nc_once(Policy::FIXED, multi(), accept_loops);
        assert!(out.accepted);
        assert_eq!(out.read, FIELD_MESSAGE, "accept_loops={accept_loops}");
    }
}
