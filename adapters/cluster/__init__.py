"""Hot standby: a lease in Redis held by the one active process, a fencing token carried by every
write-through, and the role (active / standby) of this process. See docs/cluster.md."""
