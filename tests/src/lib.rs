//! Support for the workspace's tests against a real RabbitMQ: broker address and helpers.
//! The tests themselves live in `tests/tests/`, one file per area.

/// The broker the tests talk to: `AMQP_TEST_ADDR`, or RabbitMQ's default port on loopback.
pub fn broker_addr() -> String {
    std::env::var("AMQP_TEST_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".to_owned())
}
