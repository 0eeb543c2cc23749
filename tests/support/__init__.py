"""Real servers the adapter tests talk to: Etsy's statsd daemon and a local Bot API server."""
