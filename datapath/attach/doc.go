// Package attach puts TC programs on network interfaces: with a TCX link
// where the kernel has TCX (Linux 6.6 and later), and with a clsact qdisc and
// a direct-action bpf filter over netlink otherwise. Callers get the same
// small Attachment either way and can ask which mechanism was used.
package attach
