// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
//
// Gateway steering: connections and datagrams addressed to a Gateway Service (a service
// entry with SVC_F_GATEWAY) are handed to the node-local proxy's listening socket, whatever
// address and port that socket is bound to. An sk_lookup program, attached to the node's
// network namespace, runs when the kernel looks for the socket a packet delivered on this
// node belongs to; bpf_sk_assign picks the proxy's socket from a SOCKMAP. This is what
// TPROXY does with iptables, without iptables: the accepted socket's local address
// (getsockname) is the address the client dialled, so the proxy can tell which Gateway,
// and which listener port, the connection is for.
//
//   portico_svc    (vip, port, proto) -> flags & SVC_F_GATEWAY     (lb.h, shared)
//   portico_proxy  0 -> the proxy's TCP listener, 1 -> its UDP socket   (SOCKMAP)
//
// The packet must be delivered locally for sk_lookup to run: the agent adds a `local`
// route for each Gateway address (src/steering.rs). With no proxy socket registered, the
// lookup goes on as usual and finds nothing: a TCP client gets a reset.

#include "lb.h"

#define AF_INET 2

#define PROXY_TCP 0
#define PROXY_UDP 1

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);	// a socket fd on update (aya writes 4 bytes)
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portico_proxy SEC(".maps");

SEC("sk_lookup")
int portico_steer(struct bpf_sk_lookup *ctx)
{
	if (ctx->family != AF_INET)
		return SK_PASS;
	__u32 index;
	if (ctx->protocol == IPPROTO_TCP)
		index = PROXY_TCP;
	else if (ctx->protocol == IPPROTO_UDP)
		index = PROXY_UDP;
	else
		return SK_PASS;
	struct svc_key key = {
		.addr = ctx->local_ip4,
		// The only host-order port in the context.
		.port = bpf_htons((__u16)ctx->local_port),
		.proto = (__u8)ctx->protocol,
	};
	struct svc_value *svc = bpf_map_lookup_elem(&portico_svc, &key);
	if (!svc || !(svc->flags & SVC_F_GATEWAY))
		return SK_PASS;
	struct bpf_sock *sk = bpf_map_lookup_elem(&portico_proxy, &index);
	if (!sk)
		return SK_PASS;
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	// An assign fails when the socket cannot take this packet (a TCP socket that stopped
	// listening): drop rather than let another socket on the node have it.
	return err ? SK_DROP : SK_PASS;
}

char _license[] SEC("license") = "GPL";
