"""netsim: the lab that runs warpgate inside Mininet topologies behind scripted NATs."""
