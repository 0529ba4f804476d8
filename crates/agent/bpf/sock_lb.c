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
// Backends of one service occupy consecutive slots; `cum` is the running sum of weights up
// to and including that slot, so a weighted pick is a binary search for the first slot
// whose `cum` exceeds a number in [0, total_weight). The agent writes a new slot range and
// then flips the service entry to it, so a connect never sees a half-written backend set.
//
// Addresses and ports are kept in network byte order, exactly as the socket context holds
// them. The layouts are mirrored in src/maps.rs (with size tests): change both together.
//
// The context of sock_addr programs (struct bpf_sock_addr) is uapi: the kernel rewrites its
// accesses itself, so these programs need no CO-RE relocations and build against the uapi
// headers of linux-libc-dev and libbpf-dev's helper definitions.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#define ECONNREFUSED 111
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

// Enough halvings for a binary search over 2^17 slots (the size of portico_be).
#define SEARCH_STEPS 17

struct svc_key {
	__u32 addr;	// network byte order
	__u16 port;	// network byte order
	__u8 proto;	// IPPROTO_TCP or IPPROTO_UDP
	__u8 pad;
};

struct svc_value {
	__u32 count;		// backends; 0 refuses connections
	__u32 offset;		// first slot in portico_be
	__u32 total_weight;	// sum of the backends' weights
	__u32 flags;		// SVC_F_*, for the agent and `portico lb list`
};

struct backend {
	__u32 addr;	// network byte order
	__u16 port;	// network byte order
	__u16 pad;
	__u32 weight;
	__u32 cum;	// sum of weights of this slot and those before it in the service
};

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
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portico_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portico_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rnat_key);
	__type(value, struct rnat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portico_rnat SEC(".maps");

// The murmur3 64-bit finaliser: socket cookies are sequential, this spreads them.
static __always_inline __u64 mix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

// Picks a backend of `svc` for the socket `cookie`. The choice depends only on the cookie
// and the backend set, so it is stable for the socket (every sendmsg of an unconnected
// UDP socket lands on the same backend) and spread by weight across sockets.
static __always_inline struct backend *pick(const struct svc_value *svc, __u64 cookie)
{
	if (svc->count == 0 || svc->total_weight == 0)
		return NULL;
	__u32 target = (__u32)(mix64(cookie) % svc->total_weight);
	__u32 lo = 0, hi = svc->count - 1;
	for (int i = 0; i < SEARCH_STEPS; i++) {
		if (lo >= hi)
			break;
		__u32 mid = lo + (hi - lo) / 2;
		__u32 slot = svc->offset + mid;
		struct backend *b = bpf_map_lookup_elem(&portico_be, &slot);
		if (!b)
			return NULL;
		if (b->cum > target)
			hi = mid;
		else
			lo = mid + 1;
	}
	__u32 slot = svc->offset + lo;
	return bpf_map_lookup_elem(&portico_be, &slot);
}

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
	if (!svc)
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
