# The cluster, without kube-proxy.
#
# Module v21 creates clusters with bootstrap_self_managed_addons = false: EKS installs
# no kube-proxy, CoreDNS or aws-node of its own, and only the add-ons listed in `addons`
# exist. kube-proxy is deliberately absent (reference scenario S2/S19): the Portico
# agent load-balances Services in eBPF instead.
module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "21.15.1"

  name               = var.cluster_name
  kubernetes_version = var.kubernetes_version

  endpoint_public_access       = true
  endpoint_private_access      = true
  endpoint_public_access_cidrs = var.api_public_access_cidrs

  # The identity running Terraform becomes cluster admin through an access entry, so the
  # helm/kubectl/flux providers can install things right after creation.
  enable_cluster_creator_admin_permissions = true

  addons = {
    # The CNI stays the VPC CNI: Portico replaces kube-proxy, not the CNI. It must exist
    # before nodes join or they never become Ready.
    vpc-cni = {
      before_compute = true
      most_recent    = true
    }
    # Pod Identity (iam.tf) needs its agent on every node.
    eks-pod-identity-agent = {
      before_compute = true
      most_recent    = true
    }
    # No kube-proxy here, on purpose. CoreDNS is created in aws_eks_addon.coredns below,
    # after the nodes and Portico: it needs both to become healthy.
  }

  vpc_id                   = module.vpc.vpc_id
  subnet_ids               = module.vpc.private_subnets
  control_plane_subnet_ids = module.vpc.intra_subnets

  tags = local.tags
}

# The managed node group lives outside module "eks" so that it can depend on Portico:
# without kube-proxy, aws-node reaches the API server through the `kubernetes` Service
# only once the Portico agent (a DaemonSet that tolerates not-ready nodes and talks to
# the API server by host name) runs on the node. Joining nodes before Portico is
# installed would leave them NotReady and the node group creation would time out.
module "eks_nodes" {
  source  = "terraform-aws-modules/eks/aws//modules/eks-managed-node-group"
  version = "21.15.1"

  name                 = "default"
  cluster_name         = module.eks.cluster_name
  cluster_service_cidr = module.eks.cluster_service_cidr

  subnet_ids                        = module.vpc.private_subnets
  cluster_primary_security_group_id = module.eks.cluster_primary_security_group_id
  vpc_security_group_ids            = [module.eks.node_security_group_id]

  # Amazon Linux 2023: kernel 6.x with BTF and cgroup v2, which the agent's cgroup
  # connect4/sendmsg4 programs attach to.
  ami_type       = "AL2023_x86_64_STANDARD"
  instance_types = var.node_instance_types
  capacity_type  = var.node_capacity_type

  min_size     = var.node_group_size.min
  desired_size = var.node_group_size.desired
  max_size     = var.node_group_size.max

  tags = local.tags

  depends_on = [helm_release.portico]
}

# CoreDNS needs schedulable nodes and a working `kube-dns` Service (the agent's job).
resource "aws_eks_addon" "coredns" {
  cluster_name = module.eks.cluster_name
  addon_name   = "coredns"

  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "OVERWRITE"

  tags = local.tags

  depends_on = [module.eks_nodes]
}
