//! The emulated network of a devnet (issue 8): one [`Link`] per
//! parent–child edge of the tree and one access link per node for its
//! clients, and the proxies that make traffic between two places cross
//! exactly the links of the tree path between them.
//!
//! - **Node to node.** A function of node `X` reaches every other node `Y`
//!   (its gateway and its Redis) through a chain of proxies, one per edge
//!   of the path `X → … → Y`; the gateway rewrites the `EDGE_INFRASTRUCTURE`
//!   each function gets, so that its manager, its redirects and its peer
//!   calls use that node's view ([`Topology::rewrite_infrastructure`]).
//! - **Client to node.** A client attached to node `C` reaches node `Y`
//!   through `C`'s access link and then the path `C → … → Y`
//!   ([`Topology::client_gateways`], listed by `edge-devnet status`).
//!
//! Every edge is one [`Link`] whichever way it is crossed, so connections
//! share its bandwidth and its byte counters count what crossed it
//! ([`Topology::links`], served as `GET /system/links`). A redirect's
//! `Location` is the issuing node's view of the target; a client that
//! follows it pays the path from that node (its own access link is not
//! crossed again).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context, bail};
use edge_sdk::hierarchy::{Area, Infrastructure};
use serde::{Deserialize, Serialize};

use crate::link::{Link, LinkProfile, LinkProxy};

/// Which links `up` shapes, from `--link` and `--access`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkPlan {
    /// `--link PROFILE`: every parent–child link not named otherwise.
    pub default: Option<LinkProfile>,
    /// `--link NODE=PROFILE` or `--link LEVEL=PROFILE`: the link between a
    /// node (or every node of a level) and its parent. Later ones win.
    pub named: Vec<(String, LinkProfile)>,
    /// `--access PROFILE`: each node's link to its clients.
    pub access: Option<LinkProfile>,
}

impl LinkPlan {
    /// Whether the plan asks for any emulation (otherwise the devnet runs
    /// no proxies at all).
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.named.is_empty() && self.access.is_none()
    }

    /// Adds one `--link` value: `PROFILE` or `NAME=PROFILE`.
    pub fn add_link(&mut self, value: &str) -> anyhow::Result<()> {
        match value.split_once('=') {
            Some((name, profile)) => {
                let profile =
                    LinkProfile::from_str(profile).with_context(|| format!("--link {value}"))?;
                self.named.push((name.to_string(), profile));
            }
            None => {
                self.default =
                    Some(LinkProfile::from_str(value).with_context(|| format!("--link {value}"))?);
            }
        }
        Ok(())
    }

    /// The profile of the link between `node` (of level `level`) and its
    /// parent.
    fn profile_of(&self, node: &str, level: &str) -> LinkProfile {
        self.named
            .iter()
            .rev()
            .find(|(name, _)| name == node || name == level)
            .map(|(_, profile)| *profile)
            .or(self.default)
            .unwrap_or_else(LinkProfile::unshaped)
    }

    /// Checks that every `NAME=` names a node that has a parent, or a level
    /// below the root.
    pub fn check(&self, infrastructure: &Infrastructure) -> anyhow::Result<()> {
        let root = infrastructure.root().area_name.as_str();
        let levels = infrastructure.area_types_identifiers();
        for (name, _) in &self.named {
            if name == root || levels.first().is_some_and(|top| top == name) {
                bail!("--link {name}=…: the root has no parent link");
            }
            if !infrastructure.contains(name) && !levels.contains(name) {
                bail!("--link {name}=…: no node or level named {name:?} in the hierarchy");
            }
        }
        Ok(())
    }
}

/// Where one node's services listen.
#[derive(Debug, Clone)]
pub struct NodeAddress {
    /// `areaName`.
    pub name: String,
    /// The gateway's port on 127.0.0.1.
    pub gateway_port: u16,
    /// The Redis server's port on 127.0.0.1.
    pub redis_port: u16,
}

/// One emulated link and what crossed it, as `GET /system/links` and the
/// state file show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkStatus {
    /// The lower end: the child node (for an access link, the node).
    pub node: String,
    /// The upper end: the parent node, or `clients` for an access link.
    pub peer: String,
    /// The profile from `node` to `peer` (for an access link: towards the
    /// clients).
    pub up: String,
    /// The profile from `peer` to `node`.
    pub down: String,
    /// Bytes delivered from `node` to `peer`.
    pub bytes_up: u64,
    /// Bytes delivered from `peer` to `node`.
    pub bytes_down: u64,
    /// Connections that crossed it (counted once per hop).
    pub connections: u64,
}

/// How one node sees another: the addresses that cross the tree path.
#[derive(Debug, Clone)]
struct View {
    gateway: SocketAddr,
    redis: SocketAddr,
}

/// The running emulation: links, proxies and each node's views.
pub struct Topology {
    /// The parent–child links, by child, with the parent's name.
    edges: BTreeMap<String, (String, Link)>,
    /// The access links, by node.
    access: BTreeMap<String, Link>,
    /// `views[x][y]`: how node `x` reaches node `y`.
    views: HashMap<String, HashMap<String, View>>,
    /// `clients[c][y]`: how a client attached to `c` reaches `y`'s gateway.
    clients: HashMap<String, BTreeMap<String, SocketAddr>>,
    proxies: Vec<LinkProxy>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("links", &self.edges.len())
            .field("proxies", &self.proxies.len())
            .finish()
    }
}

impl Topology {
    /// Starts the proxies of `plan` over `infrastructure`, whose nodes
    /// listen at `nodes`.
    pub async fn start(
        infrastructure: &Infrastructure,
        nodes: &[NodeAddress],
        plan: &LinkPlan,
    ) -> anyhow::Result<Topology> {
        plan.check(infrastructure)?;
        let mut edges = BTreeMap::new();
        let mut access = BTreeMap::new();
        for node in infrastructure.nodes() {
            let name = node.name().to_string();
            if let Some(parent) = infrastructure.parent_name(&name) {
                let profile = plan.profile_of(&name, node.level);
                edges.insert(name.clone(), (parent.to_string(), Link::symmetric(profile)));
            }
            let profile = plan.access.unwrap_or_else(LinkProfile::unshaped);
            access.insert(name, Link::symmetric(profile));
        }
        let address = |name: &str| {
            nodes
                .iter()
                .find(|n| n.name == name)
                .with_context(|| format!("node {name} has no address"))
        };
        let mut topology = Topology {
            edges,
            access,
            views: HashMap::new(),
            clients: HashMap::new(),
            proxies: Vec::new(),
        };
        let names: Vec<String> = infrastructure
            .nodes()
            .map(|n| n.name().to_string())
            .collect();
        for from in &names {
            for to in &names {
                let target = address(to)?;
                let path = topology.path(infrastructure, from, to)?;
                if from != to {
                    let gateway = topology.chain(&path, target.gateway_port).await?;
                    let redis = topology.chain(&path, target.redis_port).await?;
                    topology
                        .views
                        .entry(from.clone())
                        .or_default()
                        .insert(to.clone(), View { gateway, redis });
                }
                // A client enters through its node's access link; from the
                // node's side that link leads towards the client, so the
                // client's traffic crosses it reversed.
                let mut client_path = vec![topology.access[from].reversed()];
                client_path.extend(path);
                let entry = topology.chain(&client_path, target.gateway_port).await?;
                topology
                    .clients
                    .entry(from.clone())
                    .or_default()
                    .insert(to.clone(), entry);
            }
        }
        Ok(topology)
    }

    /// The links crossed from `from` to `to`, each oriented the way the
    /// traffic crosses it: up to the nearest common ancestor, then down.
    fn path(
        &self,
        infrastructure: &Infrastructure,
        from: &str,
        to: &str,
    ) -> anyhow::Result<Vec<Link>> {
        let up_path = infrastructure
            .path_from_root(from)
            .with_context(|| format!("no node {from}"))?;
        let down_path = infrastructure
            .path_from_root(to)
            .with_context(|| format!("no node {to}"))?;
        let common = up_path
            .iter()
            .zip(&down_path)
            .take_while(|(a, b)| a == b)
            .count();
        let mut links = Vec::new();
        // From `from` up to the common ancestor: child → parent.
        for child in up_path[common..].iter().rev() {
            links.push(self.edges[*child].1.clone());
        }
        // From the common ancestor down to `to`: parent → child.
        for child in &down_path[common..] {
            links.push(self.edges[*child].1.reversed());
        }
        Ok(links)
    }

    /// Starts one proxy per link of `path`, each forwarding to the next, the
    /// last to `port`; returns the first one's address.
    async fn chain(&mut self, path: &[Link], port: u16) -> anyhow::Result<SocketAddr> {
        let mut upstream = SocketAddr::from(([127, 0, 0, 1], port));
        for link in path.iter().rev() {
            let proxy = LinkProxy::bind(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                upstream,
                link.clone(),
            )
            .await
            .context("cannot start a link proxy on 127.0.0.1")?;
            upstream = proxy.local_addr();
            self.proxies.push(proxy);
        }
        Ok(upstream)
    }

    /// `EDGE_INFRASTRUCTURE` as a function of `node` must see it: every other
    /// node's gateway and Redis replaced by the proxies of the path from
    /// `node`. Text that is not a hierarchy is returned unchanged.
    pub fn rewrite_infrastructure(&self, node: &str, text: &str) -> String {
        let Ok(infrastructure) = Infrastructure::from_json(text) else {
            return text.to_string();
        };
        let Some(views) = self.views.get(node) else {
            return text.to_string();
        };
        fn rewrite(area: &Area, views: &HashMap<String, View>) -> Area {
            let mut area = area.clone();
            if let Some(view) = views.get(&area.area_name) {
                let location = &mut area.main_location;
                location.openfaas_gateway = Some(format!("http://{}", view.gateway));
                location.redis_host = Some(view.redis.ip().to_string());
                location.redis_port = Some(view.redis.port());
            }
            area.areas = area.areas.iter().map(|a| rewrite(a, views)).collect();
            area
        }
        let root = rewrite(infrastructure.root(), views);
        match Infrastructure::new(infrastructure.area_types_identifiers().to_vec(), root) {
            Ok(rewritten) => rewritten.to_json(),
            Err(_) => text.to_string(),
        }
    }

    /// The gateway of every node as a client attached to `node` reaches it.
    pub fn client_gateways(&self, node: &str) -> BTreeMap<String, String> {
        self.clients
            .get(node)
            .map(|targets| {
                targets
                    .iter()
                    .map(|(to, address)| (to.clone(), format!("http://{address}")))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every link and what crossed it so far: the parent–child links (in
    /// the hierarchy's order of children), then the access links.
    pub fn links(&self) -> Vec<LinkStatus> {
        let status = |node: &str, peer: &str, link: &Link| LinkStatus {
            node: node.to_string(),
            peer: peer.to_string(),
            up: link.up().to_string(),
            down: link.down().to_string(),
            bytes_up: link.bytes_up(),
            bytes_down: link.bytes_down(),
            connections: link.connections(),
        };
        let mut links: Vec<LinkStatus> = self
            .edges
            .iter()
            .map(|(child, (parent, link))| status(child, parent, link))
            .collect();
        links.extend(
            self.access
                .iter()
                .map(|(node, link)| status(node, "clients", link)),
        );
        links
    }

    /// Proxies running.
    pub fn proxy_count(&self) -> usize {
        self.proxies.len()
    }
}
