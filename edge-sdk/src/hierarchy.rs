//! The hierarchy file: the tree of nodes (cloud → country → city …) that
//! stateful functions run across.
//!
//! This module owns the file's format (SPEC §2, thesis Listing 6.3), the rules
//! a valid file follows, and the read-only questions other code asks about the
//! tree (thesis Listing 6.6: a node's parent, its gateway, a sub-tree, the path
//! from a node up to a level).
//!
//! An [`Infrastructure`] is always valid: it is only built by
//! [`Infrastructure::from_json`], [`Infrastructure::from_path`],
//! [`Infrastructure::new`] or serde, which check every rule and report every
//! problem at once, each naming the offending node by its path
//! (`italy/milan`). Lookups by name go through an index built at construction,
//! so they do not walk the tree.
//!
//! Filling in omitted `mainLocation` fields is the deployer's job, and knowing
//! which node a function runs on is the runtime's; neither happens here.
//!
//! ```
//! use edge_sdk::hierarchy::Infrastructure;
//!
//! let infra = Infrastructure::from_json(
//!     r#"{
//!         "areaTypesIdentifiers": ["country", "city"],
//!         "hierarchy": [{
//!             "areaName": "italy",
//!             "mainLocation": { "openfaas_gateway": "http://10.0.0.5:31112" },
//!             "areas": [
//!                 { "areaName": "milan", "mainLocation": { "openfaas_gateway": "http://10.0.0.6:31112" } },
//!                 { "areaName": "rome" }
//!             ]
//!         }]
//!     }"#,
//! )?;
//!
//! assert_eq!(infra.parent_name("milan"), Some("italy"));
//! assert_eq!(infra.parent_gateway("milan"), Some("http://10.0.0.5:31112"));
//! assert_eq!(infra.subtree("italy")?, ["italy", "milan", "rome"]);
//! assert_eq!(infra.path_to_level("rome", "country")?, ["rome", "italy"]);
//! assert_eq!(infra.level_of("rome"), Some("city"));
//! # Ok::<(), edge_sdk::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, HierarchyProblem, Result};

/// One node of the hierarchy (thesis Listing 6.2).
///
/// In JSON: `{"areaName": …, "mainLocation": {…}, "areas": […]}`. A missing
/// `mainLocation` reads as one with every field omitted and missing `areas` as
/// no children; both are always written out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Area {
    /// The node's name, unique in the whole tree and usable as one URL path
    /// segment. A missing name reads as empty, which validation reports.
    #[serde(default)]
    pub area_name: String,
    /// How to reach the node's OpenFaaS gateway and Redis.
    #[serde(default)]
    pub main_location: MainLocation,
    /// The node's children, one level below it.
    #[serde(default)]
    pub areas: Vec<Area>,
}

impl Area {
    /// A node named `area_name` with no location fields and no children.
    ///
    /// ```
    /// use edge_sdk::hierarchy::{Area, MainLocation};
    ///
    /// let italy = Area::new("italy")
    ///     .with_main_location(MainLocation {
    ///         openfaas_gateway: Some("http://10.0.0.5:31112".into()),
    ///         ..MainLocation::default()
    ///     })
    ///     .with_area(Area::new("milan"));
    /// assert_eq!(italy.areas[0].area_name, "milan");
    /// ```
    pub fn new(area_name: impl Into<String>) -> Self {
        Area {
            area_name: area_name.into(),
            main_location: MainLocation::default(),
            areas: Vec::new(),
        }
    }

    /// This node with `main_location` in place of its current one.
    #[must_use]
    pub fn with_main_location(mut self, main_location: MainLocation) -> Self {
        self.main_location = main_location;
        self
    }

    /// This node with `child` appended to its children.
    #[must_use]
    pub fn with_area(mut self, child: Area) -> Self {
        self.areas.push(child);
        self
    }
}

/// How to reach a node (the `mainLocation` object).
///
/// Every field may be omitted in the file; the deployer fills omitted ones in
/// (thesis A.4). Omitted fields are not written back out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainLocation {
    /// Base URL of the node's OpenFaaS gateway, e.g. `http://10.0.0.5:31112`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openfaas_gateway: Option<String>,
    /// Password of the gateway's `admin` user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openfaas_password: Option<String>,
    /// Host name of the node's Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_host: Option<String>,
    /// Port of the node's Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_port: Option<u16>,
    /// Password of the node's Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_password: Option<String>,
}

/// A validated hierarchy file: the level names and the tree.
///
/// In JSON: `{"areaTypesIdentifiers": [...], "hierarchy": [<the root area>]}`.
/// The fields are private so that the name index stays consistent with the
/// tree; to change the tree, take it apart with
/// [`into_parts`](Self::into_parts) and build a new value with
/// [`new`](Self::new).
#[derive(Clone)]
pub struct Infrastructure {
    area_types_identifiers: Vec<String>,
    root: Area,
    index: Index,
}

/// A node met by [`Infrastructure::nodes`], with where it sits in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRef<'a> {
    /// The node itself.
    pub area: &'a Area,
    /// Its depth; the root is at depth 0.
    pub depth: usize,
    /// Its level: the `areaTypesIdentifiers` entry at index `depth`.
    pub level: &'a str,
    /// Its parent's `areaName`; `None` for the root.
    pub parent: Option<&'a str>,
}

impl<'a> NodeRef<'a> {
    /// The node's `areaName`.
    pub fn name(&self) -> &'a str {
        &self.area.area_name
    }
}

/// Where each node sits, by its position in pre-order (the root is 0).
#[derive(Debug, Clone, Default)]
struct Index {
    position_by_name: HashMap<String, usize>,
    nodes: Vec<IndexedNode>,
}

#[derive(Debug, Clone, Copy)]
struct IndexedNode {
    parent: Option<usize>,
    /// Position among the parent's `areas`, to find the node from the root.
    child_index: usize,
    depth: usize,
    /// One past the pre-order position of the node's last descendant, so the
    /// sub-tree is exactly the positions `self..subtree_end`.
    subtree_end: usize,
}

impl Infrastructure {
    /// Parses and validates a hierarchy file.
    ///
    /// Malformed JSON, a value of the wrong type or an unknown field gives
    /// [`Error::HierarchySyntax`] with the line and column; a well-formed file
    /// that breaks the rules gives [`Error::InvalidHierarchy`] listing every
    /// problem.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawInfrastructure = serde_json::from_str(text).map_err(syntax_error)?;
        Self::try_from(raw)
    }

    /// Reads, parses and validates the hierarchy file at `path`.
    ///
    /// A file that cannot be read gives [`Error::Io`], whose message names
    /// the file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot read hierarchy file {}: {error}", path.display()),
            )
        })?;
        Self::from_json(&text)
    }

    /// Builds and validates an infrastructure from level names (root level
    /// first) and the root node.
    ///
    /// ```
    /// use edge_sdk::hierarchy::{Area, Infrastructure};
    ///
    /// let root = Area::new("italy").with_area(Area::new("milan"));
    /// let infra = Infrastructure::new(["country", "city"], root)?;
    /// assert_eq!(infra.level_of("milan"), Some("city"));
    ///
    /// let too_deep = Area::new("italy").with_area(Area::new("milan").with_area(Area::new("navigli")));
    /// assert!(Infrastructure::new(["country", "city"], too_deep).is_err());
    /// # Ok::<(), edge_sdk::Error>(())
    /// ```
    pub fn new(
        area_types_identifiers: impl IntoIterator<Item = impl Into<String>>,
        root: Area,
    ) -> Result<Self> {
        let identifiers = area_types_identifiers.into_iter().map(Into::into).collect();
        Self::assemble(Some(identifiers), Some(vec![root]))
    }

    /// Checks every rule of the hierarchy format and returns the problems
    /// found, in file order (file-level problems first, then nodes in
    /// pre-order).
    ///
    /// A value obtained from this module's constructors has passed this check
    /// already, so the result is empty; the constructors return the same list
    /// inside [`Error::InvalidHierarchy`] when it is not.
    #[must_use]
    pub fn validate(&self) -> Vec<HierarchyProblem> {
        let mut problems = Vec::new();
        check_identifiers(&self.area_types_identifiers, &mut problems);
        TreeChecker::new(self.area_types_identifiers.len(), &mut problems)
            .check_roots(std::slice::from_ref(&self.root));
        problems
    }

    /// Takes the value apart into level names and root node, e.g. to fill in
    /// omitted fields and build a new value with [`new`](Self::new).
    pub fn into_parts(self) -> (Vec<String>, Area) {
        (self.area_types_identifiers, self.root)
    }

    /// The file as indented JSON, in the thesis's shape.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("an Infrastructure always serialises to JSON")
    }

    /// The file as compact JSON, in the thesis's shape.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an Infrastructure always serialises to JSON")
    }

    /// A copy with every `openfaas_password` and `redis_password` removed:
    /// what deployed functions receive (SPEC §2, §7).
    #[must_use]
    pub fn without_passwords(&self) -> Infrastructure {
        fn strip(area: &mut Area) {
            area.main_location.openfaas_password = None;
            area.main_location.redis_password = None;
            area.areas.iter_mut().for_each(strip);
        }
        let mut copy = self.clone();
        strip(&mut copy.root);
        copy
    }

    /// The level names, root level first (`areaTypesIdentifiers`).
    pub fn area_types_identifiers(&self) -> &[String] {
        &self.area_types_identifiers
    }

    /// The root node.
    pub fn root(&self) -> &Area {
        &self.root
    }

    /// The name of the lowest level: the last of `areaTypesIdentifiers`,
    /// where the edge nodes are.
    pub fn lowest_level(&self) -> &str {
        // Validation guarantees at least one identifier.
        self.area_types_identifiers
            .last()
            .map_or("", String::as_str)
    }

    /// How many nodes the tree has.
    pub fn node_count(&self) -> usize {
        self.index.nodes.len()
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Area> {
        self.position(name).map(|position| self.area_at(position))
    }

    /// Whether the tree has a node named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.position_by_name.contains_key(name)
    }

    /// The depth of the node named `name`; the root is at depth 0.
    pub fn depth(&self, name: &str) -> Option<usize> {
        self.position(name)
            .map(|position| self.index.nodes[position].depth)
    }

    /// The level of the node named `name`: the `areaTypesIdentifiers` entry
    /// at its depth.
    pub fn level_of(&self, name: &str) -> Option<&str> {
        self.depth(name)
            .map(|depth| self.area_types_identifiers[depth].as_str())
    }

    /// The parent of the node named `name`; `None` for the root or an unknown
    /// name.
    pub fn parent(&self, name: &str) -> Option<&Area> {
        let position = self.position(name)?;
        self.index.nodes[position]
            .parent
            .map(|parent| self.area_at(parent))
    }

    /// The parent's `areaName` (thesis `getParentLocationId`).
    pub fn parent_name(&self, name: &str) -> Option<&str> {
        self.parent(name).map(|area| area.area_name.as_str())
    }

    /// The parent's `openfaas_gateway` (thesis `getParentHost`); `None` also
    /// when the parent's gateway is omitted.
    pub fn parent_gateway(&self, name: &str) -> Option<&str> {
        self.parent(name)
            .and_then(|area| area.main_location.openfaas_gateway.as_deref())
    }

    /// The `openfaas_gateway` of the node named `name` (thesis `getGateway`);
    /// `None` also when it is omitted.
    pub fn gateway(&self, name: &str) -> Option<&str> {
        self.node(name)
            .and_then(|area| area.main_location.openfaas_gateway.as_deref())
    }

    /// The names of the sub-tree rooted at `root_name`, that node first, in
    /// pre-order (thesis `getLocationsSubTree`).
    ///
    /// Fails with [`Error::UnknownNode`] if there is no such node.
    pub fn subtree(&self, root_name: &str) -> Result<Vec<&str>> {
        let position = self.known_position(root_name)?;
        let node = self.index.nodes[position];
        let mut names = Vec::with_capacity(node.subtree_end - position);
        let mut pending = vec![self.area_at(position)];
        while let Some(area) = pending.pop() {
            names.push(area.area_name.as_str());
            pending.extend(area.areas.iter().rev());
        }
        Ok(names)
    }

    /// The names on the path from `node` up to its ancestor at `level`, both
    /// included, `node` first (thesis `getLocationsFromNodeToLevel`).
    ///
    /// Fails with [`Error::UnknownNode`] or [`Error::UnknownLevel`] for names
    /// the file does not declare, and with [`Error::Custom`] when `level` lies
    /// below the node's own level, since the path only goes up.
    pub fn path_to_level(&self, node: &str, level: &str) -> Result<Vec<&str>> {
        let position = self.known_position(node)?;
        let level_depth = self.level_depth(level)?;
        let node_depth = self.index.nodes[position].depth;
        if level_depth > node_depth {
            let node_level = &self.area_types_identifiers[node_depth];
            let allowed = self.area_types_identifiers[..=node_depth].join(", ");
            return Err(Error::Custom(format!(
                "node {node:?} is at level {node_level:?}, above level {level:?}; \
                 the path goes from the node up towards the root, so the level must be one of: {allowed}"
            )));
        }
        Ok(self
            .ancestry(position)
            .into_iter()
            .skip(level_depth)
            .rev()
            .map(|area| area.area_name.as_str())
            .collect())
    }

    /// The names from the root down to the node named `name`, root first.
    pub fn path_from_root(&self, name: &str) -> Option<Vec<&str>> {
        let position = self.position(name)?;
        Some(
            self.ancestry(position)
                .into_iter()
                .map(|area| area.area_name.as_str())
                .collect(),
        )
    }

    /// The node's path from the root joined with `/`, e.g. `italy/milan`: the
    /// form used in [`HierarchyProblem::path`].
    pub fn path_string(&self, name: &str) -> Option<String> {
        self.path_from_root(name).map(|names| names.join("/"))
    }

    /// Every node in pre-order (a parent before its children, children in
    /// file order), with its depth, level and parent.
    pub fn nodes(&self) -> impl Iterator<Item = NodeRef<'_>> {
        let mut pending = vec![NodeRef {
            area: &self.root,
            depth: 0,
            level: self.level_at(0),
            parent: None,
        }];
        std::iter::from_fn(move || {
            let node = pending.pop()?;
            let child_level = self.level_at(node.depth + 1);
            pending.extend(node.area.areas.iter().rev().map(|child| NodeRef {
                area: child,
                depth: node.depth + 1,
                level: child_level,
                parent: Some(node.name()),
            }));
            Some(node)
        })
    }

    /// The nodes at `level`, in pre-order.
    ///
    /// Fails with [`Error::UnknownLevel`] if `level` is not one of
    /// `areaTypesIdentifiers`.
    pub fn nodes_at_level(&self, level: &str) -> Result<Vec<&Area>> {
        let wanted_depth = self.level_depth(level)?;
        let mut found = Vec::new();
        let mut pending = vec![(&self.root, 0)];
        while let Some((area, depth)) = pending.pop() {
            if depth == wanted_depth {
                found.push(area);
            } else {
                pending.extend(area.areas.iter().rev().map(|child| (child, depth + 1)));
            }
        }
        Ok(found)
    }

    /// Whether `ancestor` is `node` itself or lies on the path from `node` to
    /// the root; `false` if either name is unknown.
    pub fn is_ancestor_or_self(&self, ancestor: &str, node: &str) -> bool {
        match (self.position(ancestor), self.position(node)) {
            (Some(ancestor), Some(node)) => {
                (ancestor..self.index.nodes[ancestor].subtree_end).contains(&node)
            }
            _ => false,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.index.position_by_name.get(name).copied()
    }

    fn known_position(&self, name: &str) -> Result<usize> {
        self.position(name)
            .ok_or_else(|| Error::UnknownNode(name.to_owned()))
    }

    fn level_depth(&self, level: &str) -> Result<usize> {
        self.area_types_identifiers
            .iter()
            .position(|identifier| identifier == level)
            .ok_or_else(|| Error::UnknownLevel(level.to_owned()))
    }

    /// The level name at `depth`; only past the deepest node is it missing.
    fn level_at(&self, depth: usize) -> &str {
        self.area_types_identifiers
            .get(depth)
            .map_or("", String::as_str)
    }

    /// The node at a pre-order position.
    fn area_at(&self, position: usize) -> &Area {
        let node = self.index.nodes[position];
        match node.parent {
            None => &self.root,
            Some(parent) => &self.area_at(parent).areas[node.child_index],
        }
    }

    /// The nodes from the root down to the one at `position`, root first.
    fn ancestry(&self, position: usize) -> Vec<&Area> {
        let mut child_indexes = Vec::with_capacity(self.index.nodes[position].depth);
        let mut current = self.index.nodes[position];
        while let Some(parent) = current.parent {
            child_indexes.push(current.child_index);
            current = self.index.nodes[parent];
        }
        let mut area = &self.root;
        let mut path = Vec::with_capacity(child_indexes.len() + 1);
        path.push(area);
        for &child_index in child_indexes.iter().rev() {
            area = &area.areas[child_index];
            path.push(area);
        }
        path
    }

    /// Validates the parts and builds the index; `None` stands for a section
    /// missing from the file.
    fn assemble(
        area_types_identifiers: Option<Vec<String>>,
        roots: Option<Vec<Area>>,
    ) -> Result<Self> {
        let mut problems = Vec::new();
        let area_types_identifiers = match area_types_identifiers {
            Some(identifiers) => {
                check_identifiers(&identifiers, &mut problems);
                identifiers
            }
            None => {
                problems.push(file_problem(
                    "\"areaTypesIdentifiers\" is missing: list the level names from the root \
                     down, e.g. [\"country\", \"city\"]",
                ));
                Vec::new()
            }
        };
        let roots = match roots {
            None => {
                problems.push(file_problem(
                    "\"hierarchy\" is missing: it must be an array holding the root area",
                ));
                Vec::new()
            }
            Some(roots) if roots.len() != 1 => {
                problems.push(file_problem(format!(
                    "\"hierarchy\" must hold exactly one root area (the cloud), found {}; \
                     nest the other areas inside the root's \"areas\"",
                    roots.len()
                )));
                roots
            }
            Some(roots) => roots,
        };
        let index =
            TreeChecker::new(area_types_identifiers.len(), &mut problems).check_roots(&roots);
        let mut roots = roots.into_iter();
        match (problems.is_empty(), roots.next()) {
            (true, Some(root)) => Ok(Infrastructure {
                area_types_identifiers,
                root,
                index,
            }),
            _ => Err(Error::InvalidHierarchy(problems)),
        }
    }
}

impl fmt::Debug for Infrastructure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Infrastructure")
            .field("area_types_identifiers", &self.area_types_identifiers)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Equal when the level names and the trees are; the index follows from them.
impl PartialEq for Infrastructure {
    fn eq(&self, other: &Self) -> bool {
        self.area_types_identifiers == other.area_types_identifiers && self.root == other.root
    }
}

impl Eq for Infrastructure {}

impl FromStr for Infrastructure {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::from_json(text)
    }
}

impl Serialize for Infrastructure {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        InfrastructureJson {
            area_types_identifiers: &self.area_types_identifiers,
            hierarchy: [&self.root],
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Infrastructure {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = RawInfrastructure::deserialize(deserializer)?;
        Self::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawInfrastructure> for Infrastructure {
    type Error = Error;

    fn try_from(raw: RawInfrastructure) -> Result<Self> {
        Self::assemble(raw.area_types_identifiers, raw.hierarchy)
    }
}

/// The file as read, before validation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawInfrastructure {
    #[serde(default)]
    area_types_identifiers: Option<Vec<String>>,
    #[serde(default)]
    hierarchy: Option<Vec<Area>>,
}

/// The file as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InfrastructureJson<'a> {
    area_types_identifiers: &'a [String],
    hierarchy: [&'a Area; 1],
}

fn syntax_error(error: serde_json::Error) -> Error {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    // serde_json appends the position to its message; it has fields of its own here.
    let message = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full)
        .to_owned();
    Error::HierarchySyntax {
        line,
        column,
        message,
    }
}

fn file_problem(message: impl Into<String>) -> HierarchyProblem {
    HierarchyProblem {
        path: String::new(),
        message: message.into(),
    }
}

fn check_identifiers(identifiers: &[String], problems: &mut Vec<HierarchyProblem>) {
    if identifiers.is_empty() {
        problems.push(file_problem(
            "\"areaTypesIdentifiers\" is empty: list the level names from the root down, \
             e.g. [\"country\", \"city\"]",
        ));
    }
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (index, identifier) in identifiers.iter().enumerate() {
        if identifier.is_empty() {
            problems.push(file_problem(format!(
                "areaTypesIdentifiers[{index}] is empty: every level needs a name"
            )));
        } else if let Some(&first) = first_index.get(identifier.as_str()) {
            problems.push(file_problem(format!(
                "areaTypesIdentifiers[{index}] {identifier:?} repeats areaTypesIdentifiers[{first}]: \
                 level names must be unique"
            )));
        } else {
            first_index.insert(identifier, index);
        }
    }
}

/// One pass over the tree that both checks the node rules and builds the
/// index (which is only kept when no problem is found).
struct TreeChecker<'a, 'p> {
    level_count: usize,
    problems: &'p mut Vec<HierarchyProblem>,
    index: Index,
    /// The nodes in pre-order and whether each one's path segment is a
    /// `#n` placeholder, to spell out the path of an earlier node.
    areas: Vec<&'a Area>,
    uses_placeholder: Vec<bool>,
    /// The path of the node being checked.
    path: String,
}

impl<'a, 'p> TreeChecker<'a, 'p> {
    fn new(level_count: usize, problems: &'p mut Vec<HierarchyProblem>) -> Self {
        TreeChecker {
            level_count,
            problems,
            index: Index::default(),
            areas: Vec::new(),
            uses_placeholder: Vec::new(),
            path: String::new(),
        }
    }

    fn check_roots(mut self, roots: &'a [Area]) -> Index {
        for (child_index, root) in roots.iter().enumerate() {
            self.check_area(root, None, child_index, 0);
        }
        self.index
    }

    fn check_area(
        &mut self,
        area: &'a Area,
        parent: Option<usize>,
        child_index: usize,
        depth: usize,
    ) {
        let position = self.index.nodes.len();
        let name = area.area_name.as_str();
        let first_with_name = if name.is_empty() {
            None
        } else if let Some(&first) = self.index.position_by_name.get(name) {
            Some(first)
        } else {
            self.index
                .position_by_name
                .insert(name.to_owned(), position);
            None
        };
        // A name that cannot tell the node apart, or would read as two
        // segments, is replaced by the node's 1-based place among its siblings.
        let placeholder = name.is_empty() || name.contains('/') || first_with_name.is_some();
        self.index.nodes.push(IndexedNode {
            parent,
            child_index,
            depth,
            subtree_end: position + 1,
        });
        self.areas.push(area);
        self.uses_placeholder.push(placeholder);

        let parent_path_len = self.path.len();
        if depth > 0 {
            self.path.push('/');
        }
        if placeholder {
            self.path.push_str(&format!("#{}", child_index + 1));
        } else {
            self.path.push_str(name);
        }

        if let Some(problem) = area_name_problem(name) {
            self.report(problem);
        }
        if let Some(first) = first_with_name {
            let first_path = self.path_of(first);
            self.report(format!(
                "areaName {name:?} is already used by {first_path}; \
                 names must be unique in the whole hierarchy"
            ));
        }
        // Only the first node too deep on a branch is reported: its
        // descendants are too deep for the same reason.
        if self.level_count > 0 && depth == self.level_count {
            self.report(format!(
                "area is at depth {depth} but \"areaTypesIdentifiers\" names only {} level(s), \
                 so the deepest allowed depth is {}; add a level name or move the area up",
                self.level_count,
                self.level_count - 1,
            ));
        }
        self.check_main_location(&area.main_location);

        for (index, child) in area.areas.iter().enumerate() {
            self.check_area(child, Some(position), index, depth + 1);
        }
        self.index.nodes[position].subtree_end = self.index.nodes.len();
        self.path.truncate(parent_path_len);
    }

    fn check_main_location(&mut self, location: &MainLocation) {
        if let Some(gateway) = &location.openfaas_gateway
            && let Err(reason) = check_gateway_url(gateway)
        {
            self.report(format!(
                "mainLocation.openfaas_gateway {gateway:?} {reason}; write an absolute URL such as \
                 \"http://10.0.0.5:31112\", or omit the field to have the deployer fill it in"
            ));
        }
        if let Some(host) = &location.redis_host
            && (host.is_empty() || host.contains(char::is_whitespace))
        {
            self.report(format!(
                "mainLocation.redis_host {host:?} is not a host name; \
                 fix it or omit the field to have the deployer fill it in"
            ));
        }
        if location.redis_port == Some(0) {
            self.report(
                "mainLocation.redis_port is 0; use the port Redis listens on (6379 by default) \
                 or omit the field",
            );
        }
    }

    fn report(&mut self, message: impl Into<String>) {
        self.problems.push(HierarchyProblem {
            path: self.path.clone(),
            message: message.into(),
        });
    }

    /// The path of an already indexed node, spelled as it was when checked.
    fn path_of(&self, position: usize) -> String {
        let mut segments = Vec::new();
        let mut current = Some(position);
        while let Some(position) = current {
            let node = self.index.nodes[position];
            segments.push(if self.uses_placeholder[position] {
                format!("#{}", node.child_index + 1)
            } else {
                self.areas[position].area_name.clone()
            });
            current = node.parent;
        }
        segments.reverse();
        segments.join("/")
    }
}

/// What is wrong with an `areaName`, if anything (duplicates aside).
fn area_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(
            "areaName is missing or empty; give every area a unique name such as \"milan\"".into(),
        );
    }
    if name == "." || name == ".." {
        return Some(format!(
            "areaName {name:?} cannot be used as a URL path segment; choose another name"
        ));
    }
    let bad = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))?;
    Some(format!(
        "areaName {name:?} contains {bad:?}, which cannot appear in a URL path segment; \
         use only ASCII letters, digits, '-', '_' and '.'"
    ))
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host;
/// on failure says why, as the end of a sentence starting with the URL.
fn check_gateway_url(url: &str) -> std::result::Result<(), &'static str> {
    let after_scheme = ["http://", "https://"].iter().find_map(|scheme| {
        url.get(..scheme.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(scheme))
            .map(|_| &url[scheme.len()..])
    });
    let Some(rest) = after_scheme else {
        return Err("does not start with http:// or https://");
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    if rest.contains(['?', '#']) {
        return Err("has a query or fragment, which a gateway URL cannot have");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("contains credentials; put the password in openfaas_password instead");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after_host)) = bracketed.split_once(']') else {
            return Err("has an unclosed '[' in its host");
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        {
            return Err("has an invalid IPv6 host");
        }
        match after_host.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after_host.is_empty() => (host, None),
            None => return Err("has text after its IPv6 host"),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
    {
        return Err("has an invalid host");
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || !matches!(port.parse::<u16>(), Ok(p) if p != 0))
    {
        return Err("has an invalid port");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING_6_3: &str = include_str!("../tests/fixtures/hierarchy/listing-6.3.json");
    const THREE_LEVELS: &str = include_str!("../tests/fixtures/hierarchy/three-levels.json");

    fn three_levels() -> Infrastructure {
        Infrastructure::from_json(THREE_LEVELS).expect("fixture is valid")
    }

    fn problems(text: &str) -> Vec<HierarchyProblem> {
        match Infrastructure::from_json(text) {
            Err(Error::InvalidHierarchy(problems)) => problems,
            other => panic!("expected InvalidHierarchy, got {other:?}"),
        }
    }

    /// The problems as `path: message` lines, for readable assertion failures.
    fn rendered(problems: &[HierarchyProblem]) -> String {
        problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn assert_single_problem(text: &str, path: &str, message_part: &str) {
        let found = problems(text);
        assert_eq!(found.len(), 1, "{}", rendered(&found));
        assert_eq!(found[0].path, path, "{}", rendered(&found));
        assert!(
            found[0].message.contains(message_part),
            "{:?} does not mention {message_part:?}",
            found[0].message
        );
    }

    /// A two-level file whose milan node carries `milan_fields` (JSON members
    /// of the area object, without braces).
    fn with_milan(milan_fields: &str) -> String {
        format!(
            r#"{{"areaTypesIdentifiers": ["country", "city"],
               "hierarchy": [{{"areaName": "italy", "areas": [{{{milan_fields}}}]}}]}}"#
        )
    }

    #[test]
    fn listing_6_3_parses_with_every_field() {
        let infra = Infrastructure::from_json(LISTING_6_3).unwrap();
        assert_eq!(infra.area_types_identifiers(), ["country", "city"]);
        assert_eq!(infra.root().area_name, "italy");
        assert_eq!(infra.node_count(), 3);
        let milan = infra.node("milan").unwrap();
        assert_eq!(
            milan.main_location,
            MainLocation {
                openfaas_gateway: Some("http://172.18.0.2:31112".into()),
                openfaas_password: Some("brgfnngtyhrg".into()),
                redis_host: Some("my-openfaas-redis-master.openfaas-fn.svc.cluster.local".into()),
                redis_port: Some(6379),
                redis_password: Some("mnjutyrbg".into()),
            }
        );
        assert!(infra.validate().is_empty());
    }

    #[test]
    fn listing_6_3_round_trips_in_the_thesis_shape() {
        let infra = Infrastructure::from_json(LISTING_6_3).unwrap();
        let pretty = infra.to_json_pretty();
        assert_eq!(Infrastructure::from_json(&pretty).unwrap(), infra);
        assert_eq!(Infrastructure::from_json(&infra.to_json()).unwrap(), infra);

        let written: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        let original: serde_json::Value = serde_json::from_str(LISTING_6_3).unwrap();
        assert_eq!(written, original);
        assert!(written["hierarchy"].is_array());
    }

    #[test]
    fn omitted_fields_default_and_stay_omitted() {
        let infra = Infrastructure::from_json(
            r#"{"areaTypesIdentifiers": ["country"], "hierarchy": [{"areaName": "italy"}]}"#,
        )
        .unwrap();
        assert_eq!(infra.root().main_location, MainLocation::default());
        assert!(infra.root().areas.is_empty());
        let written: serde_json::Value = serde_json::from_str(&infra.to_json()).unwrap();
        assert_eq!(
            written,
            serde_json::json!({
                "areaTypesIdentifiers": ["country"],
                "hierarchy": [{"areaName": "italy", "mainLocation": {}, "areas": []}],
            })
        );
    }

    #[test]
    fn serde_deserialize_validates_too() {
        let infra: Infrastructure = serde_json::from_str(THREE_LEVELS).unwrap();
        assert_eq!(infra, three_levels());
        let error = serde_json::from_str::<Infrastructure>(
            r#"{"areaTypesIdentifiers": [], "hierarchy": [{"areaName": "italy"}]}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("areaTypesIdentifiers"),
            "{error}"
        );
        assert_eq!("x".parse::<Infrastructure>().ok(), None);
    }

    #[test]
    fn from_path_reads_the_file_and_reports_io_errors() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hierarchy");
        let infra = Infrastructure::from_path(format!("{dir}/three-levels.json")).unwrap();
        assert_eq!(infra, three_levels());
        match Infrastructure::from_path(format!("{dir}/no-such-file.json")) {
            Err(Error::Io(error)) => {
                assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
                assert!(error.to_string().contains("no-such-file.json"), "{error}");
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn missing_comma_gives_line_and_column() {
        let text = "{\n  \"areaTypesIdentifiers\": [\"country\"]\n  \"hierarchy\": []\n}";
        match Infrastructure::from_json(text) {
            Err(Error::HierarchySyntax {
                line,
                column,
                message,
            }) => {
                assert_eq!((line, column), (3, 3), "{message}");
                assert!(message.contains("expected"), "{message}");
                assert!(!message.contains("line 3"), "{message}");
            }
            other => panic!("expected HierarchySyntax, got {other:?}"),
        }
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_syntax_errors() {
        for (text, wanted) in [
            (
                with_milan(r#""areaName": "milan", "mainLocation": {"redis_port": "x"}"#),
                "invalid type",
            ),
            (
                with_milan(r#""areaName": "milan", "mainLocation": {"redis_port": 70000}"#),
                "invalid value",
            ),
            (
                with_milan(
                    r#""areaName": "milan", "mainLocation": {"openfaas_gatway": "http://a"}"#,
                ),
                "unknown field",
            ),
            (
                with_milan(r#""areaName": "milan", "area": []"#),
                "unknown field",
            ),
        ] {
            match Infrastructure::from_json(&text) {
                Err(Error::HierarchySyntax { line, message, .. }) => {
                    assert_eq!(line, 2, "{message}");
                    assert!(message.contains(wanted), "{message} lacks {wanted:?}");
                }
                other => panic!("expected HierarchySyntax for {text}, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_sections_are_reported() {
        let found = problems("{}");
        assert_eq!(found.len(), 2, "{}", rendered(&found));
        assert!(found.iter().all(|p| p.path.is_empty()));
        assert!(
            found[0]
                .message
                .contains("\"areaTypesIdentifiers\" is missing")
        );
        assert!(found[1].message.contains("\"hierarchy\" is missing"));
    }

    #[test]
    fn identifiers_must_be_present_non_empty_and_unique() {
        assert_single_problem(
            r#"{"areaTypesIdentifiers": [], "hierarchy": [{"areaName": "italy"}]}"#,
            "",
            "is empty",
        );
        assert_single_problem(
            r#"{"areaTypesIdentifiers": ["country", ""], "hierarchy": [{"areaName": "italy"}]}"#,
            "",
            "areaTypesIdentifiers[1] is empty",
        );
        assert_single_problem(
            r#"{"areaTypesIdentifiers": ["country", "city", "country"], "hierarchy": [{"areaName": "italy"}]}"#,
            "",
            "areaTypesIdentifiers[2] \"country\" repeats areaTypesIdentifiers[0]",
        );
    }

    #[test]
    fn exactly_one_root() {
        assert_single_problem(
            r#"{"areaTypesIdentifiers": ["country"], "hierarchy": []}"#,
            "",
            "exactly one root area (the cloud), found 0",
        );
        assert_single_problem(
            r#"{"areaTypesIdentifiers": ["country"], "hierarchy": [{"areaName": "italy"}, {"areaName": "france"}]}"#,
            "",
            "found 2",
        );
    }

    #[test]
    fn empty_name_is_reported_with_a_placeholder_path() {
        assert_single_problem(
            &with_milan(r#""areaName": """#),
            "italy/#1",
            "missing or empty",
        );
        assert_single_problem(
            &with_milan(r#""mainLocation": {}"#),
            "italy/#1",
            "missing or empty",
        );
    }

    #[test]
    fn names_must_be_url_path_segments() {
        assert_single_problem(
            &with_milan(r#""areaName": "new york""#),
            "italy/new york",
            "' '",
        );
        assert_single_problem(&with_milan(r#""areaName": "a/b""#), "italy/#1", "'/'");
        assert_single_problem(
            &with_milan(r#""areaName": "..""#),
            "italy/..",
            "URL path segment",
        );
        assert_single_problem(&with_milan(r#""areaName": "città""#), "italy/città", "'à'");
        assert!(Infrastructure::from_json(&with_milan(r#""areaName": "Milan_2.east-1""#)).is_ok());
    }

    #[test]
    fn duplicate_name_is_reported_at_the_second_occurrence() {
        let text = r#"{"areaTypesIdentifiers": ["country", "city", "district"],
            "hierarchy": [{"areaName": "italy", "areas": [
                {"areaName": "milan", "areas": [{"areaName": "center"}]},
                {"areaName": "rome", "areas": [{"areaName": "north"}, {"areaName": "center"}]},
                {"areaName": "milan", "areas": [{"areaName": "west"}]}
            ]}]}"#;
        let found = problems(text);
        assert_eq!(found.len(), 2, "{}", rendered(&found));
        assert_eq!(found[0].path, "italy/rome/#2");
        assert!(
            found[0]
                .message
                .contains("\"center\" is already used by italy/milan/center")
        );
        assert_eq!(found[1].path, "italy/#3");
        assert!(
            found[1]
                .message
                .contains("\"milan\" is already used by italy/milan")
        );
    }

    #[test]
    fn too_deep_is_reported_once_per_branch() {
        let text = r#"{"areaTypesIdentifiers": ["country", "city"],
            "hierarchy": [{"areaName": "italy", "areas": [
                {"areaName": "milan", "areas": [{"areaName": "navigli", "areas": [{"areaName": "x"}]}]},
                {"areaName": "rome"}
            ]}]}"#;
        let found = problems(text);
        assert_eq!(found.len(), 1, "{}", rendered(&found));
        assert_eq!(found[0].path, "italy/milan/navigli");
        assert!(found[0].message.contains("depth 2"), "{}", found[0].message);
    }

    #[test]
    fn gateway_must_be_an_absolute_http_url() {
        for bad in [
            "",
            "10.0.0.5:31112",
            "ftp://10.0.0.5",
            "http://",
            "http:///function",
            "http://:31112",
            "http://10.0.0.5:",
            "http://10.0.0.5:0",
            "http://10.0.0.5:99999",
            "http://10.0.0.5:31a",
            "http://admin:pw@10.0.0.5",
            "http://10.0.0.5 :31112",
            "http://10.0.0.5/?x=1",
            "http://[::1",
            "http://[]:8080",
            "http://ex ample.com",
        ] {
            let text = with_milan(&format!(
                r#""areaName": "milan", "mainLocation": {{"openfaas_gateway": {bad:?}}}"#
            ));
            assert_single_problem(&text, "italy/milan", "openfaas_gateway");
        }
        for good in [
            "http://10.0.0.5:31112",
            "https://gateway.example.org",
            "HTTP://gateway.example.org/",
            "http://localhost:8080/openfaas",
            "http://[::1]:8080",
            "http://[fe80::1]",
            "http://my_gateway.local",
        ] {
            let text = with_milan(&format!(
                r#""areaName": "milan", "mainLocation": {{"openfaas_gateway": {good:?}}}"#
            ));
            assert!(Infrastructure::from_json(&text).is_ok(), "{good} rejected");
        }
    }

    #[test]
    fn redis_port_must_not_be_zero_and_host_not_empty() {
        assert_single_problem(
            &with_milan(r#""areaName": "milan", "mainLocation": {"redis_port": 0}"#),
            "italy/milan",
            "redis_port is 0",
        );
        assert_single_problem(
            &with_milan(r#""areaName": "milan", "mainLocation": {"redis_host": ""}"#),
            "italy/milan",
            "redis_host",
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"{"areaTypesIdentifiers": ["country", "country"],
            "hierarchy": [
                {"areaName": "italy", "mainLocation": {"openfaas_gateway": "italy:31112"}, "areas": [
                    {"areaName": "", "mainLocation": {"redis_port": 0}},
                    {"areaName": "italy", "areas": [{"areaName": "deep"}]}
                ]},
                {"areaName": "bad name"}
            ]}"#;
        let found = problems(text);
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "",
                "",
                "italy",
                "italy/#1",
                "italy/#1",
                "italy/#2",
                "italy/#2/deep",
                "bad name"
            ],
            "{}",
            rendered(&found)
        );
        let error = Error::InvalidHierarchy(found).to_string();
        assert!(
            error.contains("italy/#2: areaName \"italy\" is already used by italy"),
            "{error}"
        );
    }

    #[test]
    fn new_validates_programmatic_trees() {
        let root = Area::new("italy")
            .with_area(Area::new("milan"))
            .with_area(Area::new("milan"));
        match Infrastructure::new(["country", "city"], root) {
            Err(Error::InvalidHierarchy(found)) => {
                assert_eq!(found.len(), 1, "{}", rendered(&found));
                assert_eq!(found[0].path, "italy/#2");
            }
            other => panic!("expected InvalidHierarchy, got {other:?}"),
        }
        let infra = Infrastructure::new(vec!["country".to_owned()], Area::new("italy")).unwrap();
        assert!(infra.validate().is_empty());
        let (identifiers, root) = infra.into_parts();
        assert_eq!(identifiers, ["country"]);
        assert_eq!(root, Area::new("italy"));
    }

    #[test]
    fn without_passwords_removes_both_passwords_everywhere() {
        let infra = three_levels();
        let stripped = infra.without_passwords();
        assert_eq!(stripped.node_count(), infra.node_count());
        for (node, original) in stripped.nodes().zip(infra.nodes()) {
            let location = &node.area.main_location;
            assert_eq!(location.openfaas_password, None, "{}", node.name());
            assert_eq!(location.redis_password, None, "{}", node.name());
            assert_eq!(
                location.openfaas_gateway,
                original.area.main_location.openfaas_gateway
            );
            assert_eq!(location.redis_host, original.area.main_location.redis_host);
            assert_eq!(location.redis_port, original.area.main_location.redis_port);
        }
        let json = stripped.to_json();
        assert!(!json.contains("password"), "{json}");
        assert_eq!(
            stripped.gateway("milan-brera"),
            Some("https://brera.example.org")
        );
        // The original keeps them.
        assert_eq!(
            infra.root().main_location.redis_password.as_deref(),
            Some("italy-redis")
        );
    }

    #[test]
    fn node_contains_depth_and_level() {
        let infra = three_levels();
        assert_eq!(infra.node_count(), 7);
        assert_eq!(infra.node("rome").unwrap().areas.len(), 2);
        assert!(infra.contains("rome-monti"));
        assert!(!infra.contains("paris"));
        assert!(infra.node("paris").is_none());
        assert_eq!(infra.depth("italy"), Some(0));
        assert_eq!(infra.depth("milan"), Some(1));
        assert_eq!(infra.depth("rome-monti"), Some(2));
        assert_eq!(infra.depth("paris"), None);
        assert_eq!(infra.level_of("italy"), Some("country"));
        assert_eq!(infra.level_of("rome"), Some("city"));
        assert_eq!(infra.level_of("milan-brera"), Some("district"));
        assert_eq!(infra.level_of("paris"), None);
        assert_eq!(infra.lowest_level(), "district");
        assert_eq!(infra.root().area_name, "italy");
    }

    #[test]
    fn parent_and_gateways() {
        let infra = three_levels();
        assert_eq!(infra.parent("italy"), None);
        assert_eq!(infra.parent("paris"), None);
        assert_eq!(infra.parent("milan").unwrap().area_name, "italy");
        assert_eq!(infra.parent_name("rome-trastevere"), Some("rome"));
        assert_eq!(infra.parent_name("milan-brera"), Some("milan"));
        assert_eq!(infra.parent_name("italy"), None);
        assert_eq!(
            infra.parent_gateway("milan-navigli"),
            Some("http://10.0.1.1:31112")
        );
        assert_eq!(infra.parent_gateway("rome"), Some("http://10.0.0.1:31112"));
        assert_eq!(infra.parent_gateway("italy"), None);
        assert_eq!(
            infra.gateway("milan-brera"),
            Some("https://brera.example.org")
        );
        assert_eq!(infra.gateway("rome-monti"), None);
        assert_eq!(infra.gateway("paris"), None);
    }

    #[test]
    fn subtree_is_pre_order_with_its_root() {
        let infra = three_levels();
        assert_eq!(
            infra.subtree("italy").unwrap(),
            [
                "italy",
                "milan",
                "milan-navigli",
                "milan-brera",
                "rome",
                "rome-trastevere",
                "rome-monti"
            ]
        );
        assert_eq!(
            infra.subtree("rome").unwrap(),
            ["rome", "rome-trastevere", "rome-monti"]
        );
        assert_eq!(infra.subtree("milan-brera").unwrap(), ["milan-brera"]);
        assert!(matches!(infra.subtree("paris"), Err(Error::UnknownNode(name)) if name == "paris"));
    }

    #[test]
    fn path_to_level_goes_up_to_the_level() {
        let infra = three_levels();
        assert_eq!(
            infra.path_to_level("milan-brera", "country").unwrap(),
            ["milan-brera", "milan", "italy"]
        );
        assert_eq!(
            infra.path_to_level("milan-brera", "city").unwrap(),
            ["milan-brera", "milan"]
        );
        assert_eq!(
            infra.path_to_level("milan-brera", "district").unwrap(),
            ["milan-brera"]
        );
        assert_eq!(
            infra.path_to_level("rome", "country").unwrap(),
            ["rome", "italy"]
        );
        assert_eq!(infra.path_to_level("italy", "country").unwrap(), ["italy"]);
        assert!(matches!(
            infra.path_to_level("paris", "country"),
            Err(Error::UnknownNode(name)) if name == "paris"
        ));
        assert!(matches!(
            infra.path_to_level("rome", "continent"),
            Err(Error::UnknownLevel(level)) if level == "continent"
        ));
        match infra.path_to_level("rome", "district") {
            Err(Error::Custom(message)) => {
                assert!(
                    message.contains("\"rome\" is at level \"city\""),
                    "{message}"
                );
                assert!(message.contains("country, city"), "{message}");
            }
            other => panic!("expected Custom, got {other:?}"),
        }
    }

    #[test]
    fn paths_from_the_root() {
        let infra = three_levels();
        assert_eq!(
            infra.path_from_root("rome-monti").unwrap(),
            ["italy", "rome", "rome-monti"]
        );
        assert_eq!(infra.path_from_root("italy").unwrap(), ["italy"]);
        assert_eq!(infra.path_from_root("paris"), None);
        assert_eq!(
            infra.path_string("milan-navigli").as_deref(),
            Some("italy/milan/milan-navigli")
        );
        assert_eq!(infra.path_string("italy").as_deref(), Some("italy"));
        assert_eq!(infra.path_string("paris"), None);
    }

    #[test]
    fn nodes_walks_in_pre_order_with_depth_level_and_parent() {
        let infra = three_levels();
        let walked: Vec<(&str, usize, &str, Option<&str>)> = infra
            .nodes()
            .map(|node| (node.name(), node.depth, node.level, node.parent))
            .collect();
        assert_eq!(
            walked,
            [
                ("italy", 0, "country", None),
                ("milan", 1, "city", Some("italy")),
                ("milan-navigli", 2, "district", Some("milan")),
                ("milan-brera", 2, "district", Some("milan")),
                ("rome", 1, "city", Some("italy")),
                ("rome-trastevere", 2, "district", Some("rome")),
                ("rome-monti", 2, "district", Some("rome")),
            ]
        );
    }

    #[test]
    fn nodes_at_level_in_pre_order() {
        let infra = three_levels();
        let names = |level| -> Vec<&str> {
            infra
                .nodes_at_level(level)
                .unwrap()
                .into_iter()
                .map(|area| area.area_name.as_str())
                .collect()
        };
        assert_eq!(names("country"), ["italy"]);
        assert_eq!(names("city"), ["milan", "rome"]);
        assert_eq!(
            names("district"),
            [
                "milan-navigli",
                "milan-brera",
                "rome-trastevere",
                "rome-monti"
            ]
        );
        assert!(matches!(
            infra.nodes_at_level("continent"),
            Err(Error::UnknownLevel(level)) if level == "continent"
        ));
    }

    #[test]
    fn ancestor_or_self() {
        let infra = three_levels();
        assert!(infra.is_ancestor_or_self("italy", "rome-monti"));
        assert!(infra.is_ancestor_or_self("rome", "rome-monti"));
        assert!(infra.is_ancestor_or_self("rome-monti", "rome-monti"));
        assert!(infra.is_ancestor_or_self("italy", "italy"));
        assert!(!infra.is_ancestor_or_self("milan", "rome-monti"));
        assert!(!infra.is_ancestor_or_self("rome-monti", "rome"));
        assert!(!infra.is_ancestor_or_self("rome-trastevere", "rome-monti"));
        assert!(!infra.is_ancestor_or_self("milan-brera", "rome"));
        assert!(!infra.is_ancestor_or_self("paris", "rome"));
        assert!(!infra.is_ancestor_or_self("rome", "paris"));
    }

    /// A cloud with 100 regions of 999 edges each: 100,001 nodes. Written
    /// as text directly, since building it through the API would validate it
    /// twice.
    fn generated_tree() -> String {
        use std::fmt::Write as _;
        let mut text = String::from(
            r#"{"areaTypesIdentifiers":["cloud","region","edge"],"hierarchy":[{"areaName":"cloud","mainLocation":{"openfaas_gateway":"http://10.0.0.1:31112"},"areas":["#,
        );
        for region in 0..100 {
            if region > 0 {
                text.push(',');
            }
            write!(text, r#"{{"areaName":"region-{region}","areas":["#).unwrap();
            for edge in 0..999 {
                if edge > 0 {
                    text.push(',');
                }
                write!(
                    text,
                    r#"{{"areaName":"edge-{region}-{edge}","mainLocation":{{"openfaas_gateway":"http://10.{region}.{}.{}:31112","redis_port":6379}}}}"#,
                    edge / 256,
                    edge % 256
                )
                .unwrap();
            }
            text.push_str("]}");
        }
        text.push_str("]}]}");
        text
    }

    #[test]
    fn a_hundred_thousand_nodes_parse_and_validate() {
        let infra = Infrastructure::from_json(&generated_tree()).unwrap();
        assert_eq!(infra.node_count(), 100_001);
        assert_eq!(
            infra.path_string("edge-99-998").as_deref(),
            Some("cloud/region-99/edge-99-998")
        );
        assert!(infra.is_ancestor_or_self("region-42", "edge-42-7"));
        assert_eq!(infra.nodes().count(), 100_001);
    }
}
