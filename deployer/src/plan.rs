//! What a deploy sends to each node (SPEC §7): the deployment built from
//! the stack file the way `faas-cli deploy` builds it, with the edge
//! environment injected and the two edge secrets added to its mounts, and
//! the secrets' values per node.
//!
//! | name | kind | content |
//! |---|---|---|
//! | `EDGE_LOCATION` | env | the node's `areaName` |
//! | `EDGE_FUNCTION` | env | the function's name |
//! | `EDGE_INFRASTRUCTURE` | env | the hierarchy JSON (compact), every password removed |
//! | `EDGE_REDIS_URL` | env | `redis://<redis_host>:<redis_port>`, no password |
//! | `edge-redis-password` | secret | the node's `redis_password` |
//! | `edge-node-token` | secret | the node token, the same on every node |
//!
//! ```
//! use deployer::plan::Plan;
//! use edge_sdk::hierarchy::{Area, Infrastructure, MainLocation};
//! use openfaas_stack::FunctionDeployment;
//!
//! let location = MainLocation {
//!     openfaas_gateway: Some("http://10.0.0.5:31112".into()),
//!     openfaas_password: Some("gw-pw".into()),
//!     redis_host: Some("redis".into()),
//!     redis_port: Some(6379),
//!     redis_password: Some("redis-pw".into()),
//! };
//! let infra = Infrastructure::new(["cloud"], Area::new("cloud").with_main_location(location))?;
//! let base = FunctionDeployment { service: "cart".into(), image: "cart:1".into(), ..Default::default() };
//! let nodes: Vec<_> = infra.nodes().collect();
//! let plan = Plan::new("cart", base, &infra, &nodes, Some("token".into()))?;
//!
//! let deployment = plan.deployment_for(&plan.targets[0]);
//! assert_eq!(deployment.env_vars["EDGE_REDIS_URL"], "redis://redis:6379");
//! assert!(!deployment.env_vars["EDGE_INFRASTRUCTURE"].contains("pw"));
//! assert_eq!(deployment.secrets, ["edge-redis-password", "edge-node-token"]);
//! assert_eq!(plan.secrets_for(&plan.targets[0])[0].value, "redis-pw");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use edge_sdk::hierarchy::{Infrastructure, NodeRef};
use openfaas_stack::{FunctionDeployment, Secret};

use crate::{Error, Result};

/// The secret holding the node's Redis password.
pub const REDIS_PASSWORD_SECRET: &str = "edge-redis-password";
/// The secret holding the node token.
pub const NODE_TOKEN_SECRET: &str = "edge-node-token";
/// The environment variable naming the node.
pub const EDGE_LOCATION: &str = "EDGE_LOCATION";
/// The environment variable naming the function.
pub const EDGE_FUNCTION: &str = "EDGE_FUNCTION";
/// The environment variable holding the hierarchy without passwords.
pub const EDGE_INFRASTRUCTURE: &str = "EDGE_INFRASTRUCTURE";
/// The environment variable holding the node's Redis URL.
pub const EDGE_REDIS_URL: &str = "EDGE_REDIS_URL";
/// Every environment variable the deployer sets, in the order shown.
pub const INJECTED_ENVIRONMENT: [&str; 4] = [
    EDGE_LOCATION,
    EDGE_FUNCTION,
    EDGE_INFRASTRUCTURE,
    EDGE_REDIS_URL,
];

/// One selected node: where it is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its `areaName`.
    pub name: String,
    /// Its path from the root, e.g. `italy/milan/m1`.
    pub path: String,
    /// Its level.
    pub level: String,
    /// Its gateway's base URL.
    pub gateway: String,
    /// The password of the gateway's `admin` user.
    pub openfaas_password: String,
    /// Its Redis password (the `edge-redis-password` secret).
    pub redis_password: String,
    /// `redis://<redis_host>:<redis_port>`.
    pub redis_url: String,
}

impl Target {
    /// The target for `node` of an autofilled `infra`.
    ///
    /// Fails with [`Error::Usage`] if the node still lacks its gateway.
    pub fn from_node(infra: &Infrastructure, node: &NodeRef<'_>) -> Result<Target> {
        let location = &node.area.main_location;
        let path = infra
            .path_string(node.name())
            .unwrap_or_else(|| node.name().to_owned());
        let gateway = location
            .openfaas_gateway
            .clone()
            .ok_or_else(|| Error::Usage(format!("{path} has no openfaas_gateway")))?;
        let host = location
            .redis_host
            .as_deref()
            .unwrap_or(crate::autofill::AUTOFILLED_REDIS_HOST);
        let port = location
            .redis_port
            .unwrap_or(crate::autofill::AUTOFILLED_REDIS_PORT);
        Ok(Target {
            name: node.name().to_owned(),
            level: node.level.to_owned(),
            gateway: gateway.trim_end_matches('/').to_owned(),
            openfaas_password: location.openfaas_password.clone().unwrap_or_default(),
            redis_password: location.redis_password.clone().unwrap_or_default(),
            redis_url: redis_url(host, port),
            path,
        })
    }
}

/// `redis://host:port`, with an IPv6 host in brackets.
pub fn redis_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("redis://[{host}]:{port}")
    } else {
        format!("redis://{host}:{port}")
    }
}

/// The deployment and the secrets for every selected node.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The function's name.
    pub function: String,
    /// The deployment common to all nodes: the stack's, with
    /// `EDGE_FUNCTION` and `EDGE_INFRASTRUCTURE` set and the edge secrets
    /// in its `secrets`.
    pub base: FunctionDeployment,
    /// The node token; `None` in a dry run before it exists.
    pub node_token: Option<String>,
    /// The selected nodes, in pre-order.
    pub targets: Vec<Target>,
    /// The injected variables that the stack file sets too (the injected
    /// values win).
    pub overridden: Vec<String>,
}

impl Plan {
    /// The plan to deploy `stack_deployment` (from
    /// [`FunctionDeployment::from_stack`]) as `function` to `nodes` of the
    /// autofilled `infra`.
    pub fn new(
        function: &str,
        stack_deployment: FunctionDeployment,
        infra: &Infrastructure,
        nodes: &[NodeRef<'_>],
        node_token: Option<String>,
    ) -> Result<Plan> {
        let mut base = stack_deployment;
        let overridden = INJECTED_ENVIRONMENT
            .iter()
            .filter(|name| base.env_vars.contains_key(**name))
            .map(|name| (*name).to_owned())
            .collect();
        base.env_vars
            .insert(EDGE_FUNCTION.to_owned(), function.to_owned());
        base.env_vars.insert(
            EDGE_INFRASTRUCTURE.to_owned(),
            infra.without_passwords().to_json(),
        );
        // The per-node values are set by deployment_for; keep the stack's
        // out of the common part so that it cannot leak through.
        base.env_vars.remove(EDGE_LOCATION);
        base.env_vars.remove(EDGE_REDIS_URL);
        for secret in [REDIS_PASSWORD_SECRET, NODE_TOKEN_SECRET] {
            if !base.secrets.iter().any(|s| s == secret) {
                base.secrets.push(secret.to_owned());
            }
        }
        let targets = nodes
            .iter()
            .map(|node| Target::from_node(infra, node))
            .collect::<Result<_>>()?;
        Ok(Plan {
            function: function.to_owned(),
            base,
            node_token,
            targets,
            overridden,
        })
    }

    /// The four injected variables for `target`, in [`INJECTED_ENVIRONMENT`] order.
    pub fn injected_environment(&self, target: &Target) -> Vec<(&'static str, String)> {
        vec![
            (EDGE_LOCATION, target.name.clone()),
            (EDGE_FUNCTION, self.function.clone()),
            (
                EDGE_INFRASTRUCTURE,
                self.base.env_vars[EDGE_INFRASTRUCTURE].clone(),
            ),
            (EDGE_REDIS_URL, target.redis_url.clone()),
        ]
    }

    /// The body of `PUT`/`POST /system/functions` for `target`.
    pub fn deployment_for(&self, target: &Target) -> FunctionDeployment {
        let mut deployment = self.base.clone();
        deployment
            .env_vars
            .insert(EDGE_LOCATION.to_owned(), target.name.clone());
        deployment
            .env_vars
            .insert(EDGE_REDIS_URL.to_owned(), target.redis_url.clone());
        deployment
    }

    /// The secrets to create or update on `target`, with their values (the
    /// node token's is empty when the plan has none, as in a dry run).
    pub fn secrets_for(&self, target: &Target) -> Vec<Secret> {
        [
            (REDIS_PASSWORD_SECRET, target.redis_password.clone()),
            (
                NODE_TOKEN_SECRET,
                self.node_token.clone().unwrap_or_default(),
            ),
        ]
        .into_iter()
        .map(|(name, value)| Secret {
            name: name.to_owned(),
            namespace: self.base.namespace.clone(),
            value,
            raw_value: None,
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infra() -> Infrastructure {
        Infrastructure::from_json(
            r#"{"areaTypesIdentifiers": ["country", "city"], "hierarchy": [{"areaName": "italy",
                "mainLocation": {"openfaas_gateway": "http://10.0.0.1:31112/", "openfaas_password": "italy-gw",
                                 "redis_host": "redis.italy", "redis_port": 6379, "redis_password": "italy-redis"},
                "areas": [{"areaName": "milan", "mainLocation": {"openfaas_gateway": "https://milan.example.org",
                           "openfaas_password": "milan-gw", "redis_host": "fd00::7", "redis_port": 7000,
                           "redis_password": "milan-redis"}}]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn each_node_gets_its_location_redis_and_secrets() {
        let infra = infra();
        let mut stack = FunctionDeployment {
            service: "cart".into(),
            image: "cart:1".into(),
            namespace: "openfaas-fn".into(),
            ..Default::default()
        };
        stack.env_vars.insert("RUST_LOG".into(), "info".into());
        stack
            .env_vars
            .insert("EDGE_LOCATION".into(), "from-stack".into());
        stack.secrets = vec!["api-key".into(), "edge-node-token".into()];
        let nodes: Vec<_> = infra.nodes().collect();
        let plan = Plan::new("cart", stack, &infra, &nodes, Some("tok".into())).unwrap();
        assert_eq!(plan.overridden, ["EDGE_LOCATION"]);

        let [italy, milan] = &plan.targets[..] else {
            panic!("two targets")
        };
        assert_eq!(italy.path, "italy");
        assert_eq!(italy.gateway, "http://10.0.0.1:31112");
        assert_eq!(milan.path, "italy/milan");
        assert_eq!(milan.level, "city");
        assert_eq!(milan.redis_url, "redis://[fd00::7]:7000");

        let deployment = plan.deployment_for(milan);
        assert_eq!(deployment.env_vars["EDGE_LOCATION"], "milan");
        assert_eq!(deployment.env_vars["EDGE_FUNCTION"], "cart");
        assert_eq!(
            deployment.env_vars["EDGE_REDIS_URL"],
            "redis://[fd00::7]:7000"
        );
        assert_eq!(deployment.env_vars["RUST_LOG"], "info");
        let hierarchy = &deployment.env_vars["EDGE_INFRASTRUCTURE"];
        assert!(!hierarchy.contains("password"), "{hierarchy}");
        assert!(!hierarchy.contains("-redis") && !hierarchy.contains("-gw"));
        assert_eq!(
            Infrastructure::from_json(hierarchy).unwrap(),
            infra.without_passwords()
        );
        assert_eq!(
            deployment.secrets,
            ["api-key", "edge-node-token", "edge-redis-password"]
        );

        let secrets = plan.secrets_for(milan);
        assert_eq!(secrets[0].name, "edge-redis-password");
        assert_eq!(secrets[0].value, "milan-redis");
        assert_eq!(secrets[0].namespace, "openfaas-fn");
        assert_eq!(secrets[1].name, "edge-node-token");
        assert_eq!(secrets[1].value, "tok");
        assert_eq!(plan.secrets_for(italy)[0].value, "italy-redis");

        let injected: Vec<&str> = plan
            .injected_environment(italy)
            .iter()
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(injected, INJECTED_ENVIRONMENT);
    }
}
