// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
//
// Socket-level load balancing for ClusterIP Services (the kube-proxy replacement's east-west
// half). Instead of translating every packet, the address a socket talks to is rewritten
// once, in the system call, by cgroup sock_addr hooks:
//
//   connect4      connect(VIP:port)  -> connect(backend)       TCP and connected UDP
//   sendmsg4      sendto(VIP:port)   -> sendto(backend)        unconnected UDP
//   recvmsg4      recvfrom() = backend -> recvfrom() = VIP     UDP replies look like the VIP's
//   getpeername4  getpeername() = backend -> VIP               the app sees what it dialled
//
// Maps (pinned by name under the agent's pin directory, so that the datapath keeps working
// while the agent restarts and a restarted agent adopts them):
//
//   portico_svc   (vip, port, proto)          -> (count, offset, total_weight, flags)
//   portico_be    slot                        -> (ip, port, weight, cum)  slots offset..offset+count
//   portico_rnat  (socket cookie, ip, port)   -> (vip, port)              LRU, written on rewrite
//
// (the first two, and the weighted pick, are in lb.h). Gateway Services (SVC_F_GATEWAY) are
// left alone: their address is delivered on the node, where steer.c hands the connection
// to the node-local proxy, which must see the address the client dialled.
//
// Addresses and ports are kept in network byte order, exactly as the socket context holds
// them. The layouts are mirrored in src/maps.rs (with size tests): change both together.
//
// The context of sock_addr programs (struct bpf_sock_addr) is uapi: the kernel rewrites its
// accesses itself, so these programs need no CO-RE relocations and build against the uapi
// headers of linux-libc-dev and libbpf-dev's helper definitions.

#include "lb.h"

#define ECONNREFUSED 111
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

struct rnat_key {
	__u64 cookie;	// bpf_get_socket_cookie of the client socket
	__u32 addr;	// the backend, network byte order
	__u16 port;
	__u16 pad;
};

struct rnat_value {
	__u32 addr;	// the service VIP, network byte order
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rnat_key);
	__type(value, struct rnat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portico_rnat SEC(".maps");

static __always_inline int proto_of(struct bpf_sock_addr *ctx, __u8 *proto)
{
	if (ctx->type == SOCK_STREAM && ctx->protocol == IPPROTO_TCP) {
		*proto = IPPROTO_TCP;
		return 0;
	}
	if (ctx->type == SOCK_DGRAM && ctx->protocol == IPPROTO_UDP) {
		*proto = IPPROTO_UDP;
		return 0;
	}
	return -1;
}

// Rewrites the destination in `ctx` when it is a service. Returns 1 to let the call go on,
// 0 to fail it (the service has no backends).
static __always_inline int translate(struct bpf_sock_addr *ctx)
{
	__u8 proto;
	if (proto_of(ctx, &proto) < 0)
		return 1;
	struct svc_key key = {
		.addr = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
		.proto = proto,
	};
	struct svc_value *svc = bpf_map_lookup_elem(&portico_svc, &key);
	if (!svc || (svc->flags & SVC_F_GATEWAY))
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct backend *b = pick(svc, cookie);
	if (!b) {
		// Kubernetes: "a Service with no endpoints rejects connections" (kube-proxy
		// installs a REJECT rule, which the client sees as ECONNREFUSED). Returning 0
		// alone would give EPERM; setting the return value first makes the syscall fail
		// with ECONNREFUSED, as it does with kube-proxy.
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	struct rnat_key rk = {
		.cookie = cookie,
		.addr = b->addr,
		.port = b->port,
	};
	struct rnat_value rv = {
		.addr = key.addr,
		.port = key.port,
	};
	bpf_map_update_elem(&portico_rnat, &rk, &rv, BPF_ANY);
	ctx->user_ip4 = b->addr;
	ctx->user_port = (__u32)b->port;
	return 1;
}

// Makes a backend's address look like the service's again, for the socket that was sent
// to it.
static __always_inline void reverse(struct bpf_sock_addr *ctx)
{
	struct rnat_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
	};
	struct rnat_value *rv = bpf_map_lookup_elem(&portico_rnat, &rk);
	if (!rv)
		return;
	ctx->user_ip4 = rv->addr;
	ctx->user_port = (__u32)rv->port;
}

SEC("cgroup/connect4")
int portico_connect4(struct bpf_sock_addr *ctx)
{
	return translate(ctx);
}

SEC("cgroup/sendmsg4")
int portico_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate(ctx);
}

SEC("cgroup/recvmsg4")
int portico_recvmsg4(struct bpf_sock_addr *ctx)
{
	reverse(ctx);
	return 1; // recvmsg hooks must return 1
}

SEC("cgroup/getpeername4")
int portico_getpeername4(struct bpf_sock_addr *ctx)
{
	reverse(ctx);
	return 1; // getpeername hooks must return 1
}

// Dual licensed; the kernel is told the GPL side, which its helpers accept.
char _license[] SEC("license") = "GPL";
