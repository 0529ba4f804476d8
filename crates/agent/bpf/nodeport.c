// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
//
// NodePort and LoadBalancer traffic from outside the node (the kube-proxy replacement's
// north-south half): tc programs on the node's external interface, attached with tcx.
//
//   ingress  client -> VIP:port (or any node address:nodePort)
//            becomes client -> backend; the pick is remembered in portico_ct
//   egress   backend -> client (a reply, forwarded back out of the same interface)
//            becomes VIP:port -> client, by the reverse entry in portico_ct
//
// Frontends are the service entries flagged SVC_F_EXTERNAL: an address:port for a
// LoadBalancer IP, 0.0.0.0:nodePort for a NodePort (any address of the node). With
// externalTrafficPolicy: Local the agent programs only this node's backends, so a service
// with none drops the packet here ("traffic is dropped" when a node has no local
// endpoints, as kube-proxy does), and the client's load balancer moves on to another node.
// Gateway Services (SVC_F_GATEWAY) are not translated: they are delivered on the node and
// steered to the proxy by steer.c.
//
// The client's address is kept (no SNAT), so the backend's reply must be routed back
// through this node: true of the node's own pods (their default route is the node). A
// backend on another node would answer the client directly and the reply would not be
// translated; that needs SNAT or DSR, which this datapath does not do yet.
//
//   portico_ct  (saddr, daddr, sport, dport, proto, dir) -> (addr, port)   LRU
//               dir 0: client, VIP -> backend      dir 1: backend, client -> VIP
//
// The pick hashes the 5-tuple, so a flow whose entries were evicted comes back to the same
// backend as long as the backend set has not changed.

#include "lb.h"

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>

// Programs are in section "classifier", the name aya 0.14 knows tc programs by; whether
// they attach with tcx or netlink is decided when attaching.

#define CT_FORWARD 0
#define CT_REVERSE 1

struct ct_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 dir;
	__u16 pad;
};

struct ct_value {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portico_ct SEC(".maps");

struct flow {
	__u32 saddr, daddr;
	__u16 sport, dport;	// network byte order
	__u8 proto;
	__u32 l4_off;		// from the start of the packet
};

// Parses an IPv4 TCP or UDP packet that is not a later fragment. Returns 0 on success.
static __always_inline int parse(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return -1;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return -1;
	// Fragments after the first carry no ports.
	if (ip->frag_off & bpf_htons(0x1fff))
		return -1;
	__u32 l4_off = sizeof(struct ethhdr) + ip->ihl * 4;
	__u16 ports[2];
	if (bpf_skb_load_bytes(skb, l4_off, ports, sizeof(ports)) < 0)
		return -1;
	f->saddr = ip->saddr;
	f->daddr = ip->daddr;
	f->sport = ports[0];
	f->dport = ports[1];
	f->proto = ip->protocol;
	f->l4_off = l4_off;
	return 0;
}

static __always_inline __u32 csum_off(const struct flow *f)
{
	return f->l4_off + (f->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
						   : offsetof(struct udphdr, check));
}

// Rewrites the source (src = 1) or destination address and port of the packet, with
// the IP and TCP/UDP checksums. A UDP checksum of 0 ("none") stays 0.
static __always_inline int rewrite(struct __sk_buff *skb, const struct flow *f, int src,
				   __u32 addr, __u16 port)
{
	__u32 old_addr = src ? f->saddr : f->daddr;
	__u16 old_port = src ? f->sport : f->dport;
	__u32 addr_off = sizeof(struct ethhdr) +
			 (src ? offsetof(struct iphdr, saddr) : offsetof(struct iphdr, daddr));
	__u32 port_off = f->l4_off + (src ? 0 : 2);
	__u64 mangled = f->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum_off(f), old_addr, addr,
				BPF_F_PSEUDO_HDR | mangled | sizeof(addr)) < 0)
		return -1;
	if (bpf_l4_csum_replace(skb, csum_off(f), old_port, port, mangled | sizeof(port)) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, sizeof(struct ethhdr) + offsetof(struct iphdr, check),
				old_addr, addr, sizeof(addr)) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, addr_off, &addr, sizeof(addr), 0) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0) < 0)
		return -1;
	return 0;
}

static __always_inline struct svc_value *external_service(const struct flow *f)
{
	struct svc_key key = {.addr = f->daddr, .port = f->dport, .proto = f->proto};
	struct svc_value *svc = bpf_map_lookup_elem(&portico_svc, &key);
	if (!svc) {
		key.addr = 0; // a NodePort: any address of the node
		svc = bpf_map_lookup_elem(&portico_svc, &key);
	}
	if (!svc || !(svc->flags & SVC_F_EXTERNAL) || (svc->flags & SVC_F_GATEWAY))
		return NULL;
	return svc;
}

SEC("classifier")
int portico_nodeport_in(struct __sk_buff *skb)
{
	struct flow f = {};
	if (parse(skb, &f) < 0)
		return TC_ACT_OK;
	struct ct_key fwd = {
		.saddr = f.saddr, .daddr = f.daddr, .sport = f.sport, .dport = f.dport,
		.proto = f.proto, .dir = CT_FORWARD,
	};
	struct ct_value to;
	struct ct_value *known = bpf_map_lookup_elem(&portico_ct, &fwd);
	if (known) {
		to = *known;
	} else {
		struct svc_value *svc = external_service(&f);
		if (!svc)
			return TC_ACT_OK;
		__u64 h = ((__u64)f.saddr << 32 | f.daddr) ^
			  ((__u64)f.sport << 24 | (__u64)f.dport << 8 | f.proto);
		struct backend *b = pick(svc, h);
		if (!b)
			return TC_ACT_SHOT; // no backends (on this node, for Local): drop
		to.addr = b->addr;
		to.port = b->port;
		to.pad = 0;
		struct ct_key rev = {
			.saddr = b->addr, .daddr = f.saddr, .sport = b->port, .dport = f.sport,
			.proto = f.proto, .dir = CT_REVERSE,
		};
		struct ct_value back = {.addr = f.daddr, .port = f.dport};
		// The reverse entry first: a reply can never find a forward entry without it.
		if (bpf_map_update_elem(&portico_ct, &rev, &back, BPF_ANY) < 0 ||
		    bpf_map_update_elem(&portico_ct, &fwd, &to, BPF_ANY) < 0)
			return TC_ACT_SHOT;
	}
	if (rewrite(skb, &f, 0, to.addr, to.port) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("classifier")
int portico_nodeport_out(struct __sk_buff *skb)
{
	struct flow f = {};
	if (parse(skb, &f) < 0)
		return TC_ACT_OK;
	struct ct_key rev = {
		.saddr = f.saddr, .daddr = f.daddr, .sport = f.sport, .dport = f.dport,
		.proto = f.proto, .dir = CT_REVERSE,
	};
	struct ct_value *vip = bpf_map_lookup_elem(&portico_ct, &rev);
	if (!vip)
		return TC_ACT_OK;
	struct ct_value from = *vip;
	if (rewrite(skb, &f, 1, from.addr, from.port) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
