"""Shared test infrastructure: broker, worker and proxy processes, the stack, traffic
clients, a port forwarder and a webhook receiver. Test modules import from here, never
from one another."""
