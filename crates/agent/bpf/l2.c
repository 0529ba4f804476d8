// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
//
// L2 announcements: answers ARP requests for LoadBalancer IPs this node was elected to
// announce, so that hosts on the same segment send the IPs' traffic to this node (where
// nodeport.c or steer.c take it). An XDP program on each selected interface turns a
// matching who-has request into the is-at reply in place and sends it back out of the
// same interface (XDP_TX); everything else passes to the kernel untouched.
//
//   portico_l2        (ifindex, ip) -> the interface's MAC     written by the agent
//   portico_l2_stats  0 -> replies sent                        per CPU
//
// Only the elected node has an IP in its map, so exactly one node answers; handing an IP
// over is a delete on one node and an insert on the other. No gratuitous ARP is sent on a
// hand-over yet: neighbours move to the new node when their cache entry goes stale and
// they ask again (seconds, by default).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

struct l2_key {
	__u32 ifindex;
	__u32 addr;	// network byte order
};

struct l2_value {
	__u8 mac[6];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct l2_key);
	__type(value, struct l2_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portico_l2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} portico_l2_stats SEC(".maps");

// An Ethernet/IPv4 ARP packet (RFC 826); the addresses are not 4-byte aligned, so they are
// copied with __builtin_memcpy rather than read as integers.
struct arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));

SEC("xdp")
int portico_l2_arp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_ARP))
		return XDP_PASS;
	struct arp_eth *arp = (void *)(eth + 1);
	if ((void *)(arp + 1) > data_end)
		return XDP_PASS;
	if (arp->htype != bpf_htons(ARPHRD_ETHER) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4 || arp->op != bpf_htons(ARPOP_REQUEST))
		return XDP_PASS;
	struct l2_key key = {.ifindex = ctx->ingress_ifindex};
	__builtin_memcpy(&key.addr, arp->tpa, 4);
	struct l2_value *v = bpf_map_lookup_elem(&portico_l2, &key);
	if (!v)
		return XDP_PASS;

	// who-has tpa tell spa  ->  tpa is-at our MAC, to the asker.
	arp->op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	__builtin_memcpy(arp->tpa, arp->spa, 4);
	__builtin_memcpy(arp->sha, v->mac, ETH_ALEN);
	__builtin_memcpy(arp->spa, &key.addr, 4);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, v->mac, ETH_ALEN);

	__u32 zero = 0;
	__u64 *replies = bpf_map_lookup_elem(&portico_l2_stats, &zero);
	if (replies)
		*replies += 1;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
