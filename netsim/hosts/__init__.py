"""What runs inside lab hosts (started by the control side in a host's namespace): the agent that drives
a warpgate Node, the RFC 5780 probes, the userspace delay relay.
"""
