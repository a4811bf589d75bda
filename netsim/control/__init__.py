"""What runs as root around the lab: building it (Mininet, nft, daemons), driving the agents through a
scenario, validating routers, capturing and reporting.
"""
