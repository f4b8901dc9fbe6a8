"""Receivers: the server's listeners (agent, forward, audit webhook, syslog, OTLP, ``_bulk``).

Each module registers one component with ``@receivers.register("...")``; ``agent_protocol`` holds the
wire format shared with the agent.
"""
