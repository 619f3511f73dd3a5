//! What `check-infrastructure` and `display-infrastructure` print: the
//! one-line summary of a valid file, the tree of area names with their
//! levels, the nodes per level, and the same as JSON.
//!
//! ```
//! use deployer::display::{render_tree, summary};
//! use edge_sdk::hierarchy::{Area, Infrastructure};
//!
//! let root = Area::new("italy").with_area(Area::new("milan")).with_area(Area::new("rome"));
//! let infra = Infrastructure::new(["country", "city"], root)?;
//! assert_eq!(summary(&infra), "3 nodes on 2 levels (country: 1, city: 2)");
//! assert_eq!(render_tree(&infra), "italy (country)\n├── milan (city)\n└── rome (city)\n");
//! # Ok::<(), edge_sdk::Error>(())
//! ```

use std::fmt::Write as _;

use edge_sdk::hierarchy::{Area, Infrastructure};
use serde::Serialize;

/// Each level's identifier with how many nodes it has, root level first.
pub fn level_counts(infra: &Infrastructure) -> Vec<(&str, usize)> {
    let mut counts: Vec<(&str, usize)> = infra
        .area_types_identifiers()
        .iter()
        .map(|level| (level.as_str(), 0))
        .collect();
    for node in infra.nodes() {
        counts[node.depth].1 += 1;
    }
    counts
}

/// `9 nodes on 3 levels (country: 1, city: 3, district: 5)`.
pub fn summary(infra: &Infrastructure) -> String {
    let counts = level_counts(infra);
    let levels: Vec<String> = counts
        .iter()
        .map(|(level, count)| format!("{level}: {count}"))
        .collect();
    format!(
        "{} on {} ({})",
        plural(infra.node_count(), "node"),
        plural(counts.len(), "level"),
        levels.join(", ")
    )
}

/// The tree of area names, each with its level, drawn with box-drawing
/// characters; one line per node.
pub fn render_tree(infra: &Infrastructure) -> String {
    let levels = infra.area_types_identifiers();
    let mut out = String::new();
    let root = infra.root();
    let _ = writeln!(out, "{} ({})", root.area_name, levels[0]);
    let mut prefix = String::new();
    render_children(root, 1, levels, &mut prefix, &mut out);
    out
}

fn render_children(
    area: &Area,
    depth: usize,
    levels: &[String],
    prefix: &mut String,
    out: &mut String,
) {
    let level = levels.get(depth).map_or("", String::as_str);
    for (index, child) in area.areas.iter().enumerate() {
        let last = index + 1 == area.areas.len();
        let _ = writeln!(
            out,
            "{prefix}{}{} ({level})",
            if last { "└── " } else { "├── " },
            child.area_name
        );
        let kept = prefix.len();
        prefix.push_str(if last { "    " } else { "│   " });
        render_children(child, depth + 1, levels, prefix, out);
        prefix.truncate(kept);
    }
}

/// The levels with their node counts, aligned, and the total.
pub fn render_levels(infra: &Infrastructure) -> String {
    let counts = level_counts(infra);
    let width = counts
        .iter()
        .map(|(level, _)| level.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("levels:\n");
    for (depth, (level, count)) in counts.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {depth}  {level:<width$}  {}",
            plural(*count, "node")
        );
    }
    let _ = writeln!(out, "total: {}", plural(infra.node_count(), "node"));
    out
}

/// `display-infrastructure`'s text output: the tree, a blank line, the
/// levels.
pub fn render_text(infra: &Infrastructure) -> String {
    format!("{}\n{}", render_tree(infra), render_levels(infra))
}

/// `display-infrastructure --format json`, one line:
/// `{"levels":[{"name":"country","nodes":1},…],"tree":{"name":"italy","level":"country","children":[…]}}`.
pub fn render_json(infra: &Infrastructure) -> String {
    #[derive(Serialize)]
    struct Level<'a> {
        name: &'a str,
        nodes: usize,
    }
    #[derive(Serialize)]
    struct Node<'a> {
        name: &'a str,
        level: &'a str,
        children: Vec<Node<'a>>,
    }
    #[derive(Serialize)]
    struct Display<'a> {
        levels: Vec<Level<'a>>,
        tree: Node<'a>,
    }
    fn tree<'a>(area: &'a Area, depth: usize, levels: &'a [String]) -> Node<'a> {
        Node {
            name: &area.area_name,
            level: levels.get(depth).map_or("", String::as_str),
            children: area
                .areas
                .iter()
                .map(|child| tree(child, depth + 1, levels))
                .collect(),
        }
    }
    let display = Display {
        levels: level_counts(infra)
            .into_iter()
            .map(|(name, nodes)| Level { name, nodes })
            .collect(),
        tree: tree(infra.root(), 0, infra.area_types_identifiers()),
    };
    serde_json::to_string(&display).expect("plain structs serialise to JSON")
}

/// `1 node`, `2 nodes`.
pub(crate) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn italy() -> Infrastructure {
        let root = Area::new("italy")
            .with_area(
                Area::new("milan")
                    .with_area(Area::new("m1"))
                    .with_area(Area::new("m2")),
            )
            .with_area(Area::new("rome").with_area(Area::new("r1")))
            .with_area(Area::new("turin"));
        Infrastructure::new(["country", "city", "district"], root).unwrap()
    }

    #[test]
    fn the_tree_shows_every_name_with_its_level() {
        assert_eq!(
            render_tree(&italy()),
            "\
italy (country)
├── milan (city)
│   ├── m1 (district)
│   └── m2 (district)
├── rome (city)
│   └── r1 (district)
└── turin (city)
"
        );
    }

    #[test]
    fn levels_are_counted() {
        let infra = italy();
        assert_eq!(
            level_counts(&infra),
            [("country", 1), ("city", 3), ("district", 3)]
        );
        assert_eq!(
            render_levels(&infra),
            "levels:\n  0  country   1 node\n  1  city      3 nodes\n  2  district  3 nodes\ntotal: 7 nodes\n"
        );
        assert_eq!(
            summary(&infra),
            "7 nodes on 3 levels (country: 1, city: 3, district: 3)"
        );
    }

    #[test]
    fn json_has_levels_and_tree() {
        let text = render_json(&italy());
        assert!(
            text.starts_with(r#"{"levels":[{"name":"country","nodes":1},"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#""tree":{"name":"italy","level":"country","children":[{"name":"milan""#
            ),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["levels"][1], json!({"name": "city", "nodes": 3}));
        assert_eq!(json["tree"]["name"], "italy");
        assert_eq!(json["tree"]["level"], "country");
        assert_eq!(
            json["tree"]["children"][0]["children"][1],
            json!({"name": "m2", "level": "district", "children": []})
        );
    }
}
