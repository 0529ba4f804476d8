// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
//
// The service maps every datapath program reads, and the weighted backend pick. Included
// by each program source; the maps are pinned by name, so the objects loaded from
// sock_lb.c, steer.c and nodeport.c share one copy of each map under the pin directory.
//
//   portico_svc   (vip, port, proto)          -> (count, offset, total_weight, flags)
//   portico_be    slot                        -> (ip, port, weight, cum)  slots offset..offset+count
//
// Backends of one service occupy consecutive slots; `cum` is the running sum of weights up
// to and including that slot, so a weighted pick is a binary search for the first slot
// whose `cum` exceeds a number in [0, total_weight). The agent writes a new slot range and
// then flips the service entry to it, so a lookup never sees a half-written backend set.
//
// Addresses and ports are kept in network byte order. The layouts are mirrored in
// src/maps.rs (with size tests): change both together.

#ifndef PORTICO_LB_H
#define PORTICO_LB_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Enough halvings for a binary search over 2^17 slots (the size of portico_be).
#define SEARCH_STEPS 17

// svc_value.flags. The agent sets them from the Service; see src/maps.rs.
#define SVC_F_GATEWAY	(1U << 0)	// steer to the node-local proxy (steer.c), never to a backend
#define SVC_F_EXTERNAL	(1U << 1)	// a NodePort or LoadBalancer frontend, served by nodeport.c
#define SVC_F_LOCAL	(1U << 2)	// externalTrafficPolicy: Local (backends are this node's only)

struct svc_key {
	__u32 addr;	// network byte order; 0 for a NodePort (any node address)
	__u16 port;	// network byte order
	__u8 proto;	// IPPROTO_TCP or IPPROTO_UDP
	__u8 pad;
};

struct svc_value {
	__u32 count;		// backends; 0 refuses connections
	__u32 offset;		// first slot in portico_be
	__u32 total_weight;	// sum of the backends' weights
	__u32 flags;		// SVC_F_*
};

struct backend {
	__u32 addr;	// network byte order
	__u16 port;	// network byte order
	__u16 pad;
	__u32 weight;
	__u32 cum;	// sum of weights of this slot and those before it in the service
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

// Picks a backend of `svc` for a flow identified by `flow` (a socket cookie, a hash of a
// 5-tuple). The choice depends only on `flow` and the backend set, so it is stable for
// the flow and spread by weight across flows.
static __always_inline struct backend *pick(const struct svc_value *svc, __u64 flow)
{
	if (svc->count == 0 || svc->total_weight == 0)
		return NULL;
	__u32 target = (__u32)(mix64(flow) % svc->total_weight);
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

#endif
