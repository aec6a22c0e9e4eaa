"""CloudEvents 1.0 over HTTP (binary and structured content modes), with no SDK: the event types,
the binding, the reply to an event and the replies remembered for redeliveries."""
