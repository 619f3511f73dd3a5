//! Which nodes a deploy goes to (thesis A.6.2): the nodes of one level
//! (`--inEvery`, default the lowest) that lie in the subtree of any
//! `--inAreas` area (default the root) and in the subtree of no
//! `--exceptIn` area — `--exceptIn` wins.
//!
//! ```
//! use deployer::select::{Selection, select_nodes};
//! use edge_sdk::hierarchy::{Area, Infrastructure};
//!
//! let root = Area::new("italy")
//!     .with_area(Area::new("milan").with_area(Area::new("m1")).with_area(Area::new("m2")))
//!     .with_area(Area::new("rome").with_area(Area::new("r1")));
//! let infra = Infrastructure::new(["country", "city", "district"], root)?;
//!
//! let everywhere_but_m2 = Selection { except_in: vec!["m2".into()], ..Selection::default() };
//! let names: Vec<&str> = select_nodes(&infra, &everywhere_but_m2)?.iter().map(|n| n.name()).collect();
//! assert_eq!(names, ["m1", "r1"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use edge_sdk::hierarchy::{Infrastructure, NodeRef};

use crate::{Error, Result};

/// At most this many names are listed when telling which names are valid.
const LISTED_NAMES: usize = 20;

/// The selection flags of `deploy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--inEvery`: the level to deploy on; `None` for the lowest.
    pub level: Option<String>,
    /// `--inAreas`: deploy only in these subtrees; empty for the root's.
    pub in_areas: Vec<String>,
    /// `--exceptIn`: never deploy in these subtrees.
    pub except_in: Vec<String>,
}

impl Selection {
    /// The level the selection deploys on in `infra`.
    pub fn level<'a>(&'a self, infra: &'a Infrastructure) -> &'a str {
        self.level
            .as_deref()
            .unwrap_or_else(|| infra.lowest_level())
    }

    /// A one-line description, e.g. `level "district" in milan, rome except in m2`.
    pub fn describe(&self, infra: &Infrastructure) -> String {
        let mut text = format!("level {:?}", self.level(infra));
        if !self.in_areas.is_empty() {
            text.push_str(&format!(" in {}", self.in_areas.join(", ")));
        }
        if !self.except_in.is_empty() {
            text.push_str(&format!(" except in {}", self.except_in.join(", ")));
        }
        text
    }
}

/// The nodes `selection` picks, in pre-order.
///
/// Fails with [`Error::Usage`] when the level or an area is not in the
/// hierarchy (naming it and listing the valid ones) or when no node is
/// left.
pub fn select_nodes<'a>(
    infra: &'a Infrastructure,
    selection: &Selection,
) -> Result<Vec<NodeRef<'a>>> {
    let level = selection.level(infra);
    if !infra.area_types_identifiers().iter().any(|id| id == level) {
        return Err(Error::Usage(format!(
            "no level named {level:?} in the hierarchy (--inEvery); the levels are: {}",
            infra.area_types_identifiers().join(", ")
        )));
    }
    check_areas_exist(infra, selection)?;

    let root = infra.root().area_name.as_str();
    let in_areas: Vec<&str> = if selection.in_areas.is_empty() {
        vec![root]
    } else {
        selection.in_areas.iter().map(String::as_str).collect()
    };
    let selected: Vec<NodeRef<'a>> = infra
        .nodes()
        .filter(|node| node.level == level)
        .filter(|node| {
            in_areas
                .iter()
                .any(|area| infra.is_ancestor_or_self(area, node.name()))
        })
        .filter(|node| {
            !selection
                .except_in
                .iter()
                .any(|area| infra.is_ancestor_or_self(area, node.name()))
        })
        .collect();
    if selected.is_empty() {
        return Err(Error::Usage(empty_selection_message(infra, selection)));
    }
    Ok(selected)
}

fn check_areas_exist(infra: &Infrastructure, selection: &Selection) -> Result<()> {
    let unknown: Vec<String> = [
        ("--inAreas", &selection.in_areas),
        ("--exceptIn", &selection.except_in),
    ]
    .into_iter()
    .flat_map(|(flag, areas)| {
        areas
            .iter()
            .filter(|area| !infra.contains(area))
            .map(move |area| format!("{area:?} ({flag})"))
    })
    .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = infra.nodes().map(|node| node.name()).collect();
    Err(Error::Usage(format!(
        "no area named {} in the hierarchy; the areas are: {}",
        unknown.join(", "),
        list_names(&names)
    )))
}

fn empty_selection_message(infra: &Infrastructure, selection: &Selection) -> String {
    let level = selection.level(infra);
    let mut message = format!("no node to deploy to: no node at level {level:?}");
    if !selection.in_areas.is_empty() {
        message.push_str(&format!(
            " lies in {} (--inAreas)",
            selection.in_areas.join(", ")
        ));
    }
    if !selection.except_in.is_empty() {
        message.push_str(&format!(
            " outside {} (--exceptIn)",
            selection.except_in.join(", ")
        ));
    }
    let at_level: Vec<&str> = infra
        .nodes()
        .filter(|node| node.level == level)
        .map(|node| node.name())
        .collect();
    if at_level.is_empty() {
        message.push_str(&format!(
            "; the hierarchy has no node at level {level:?} at all"
        ));
    } else {
        message.push_str(&format!(
            "; the nodes at level {level:?} are: {}",
            list_names(&at_level)
        ));
    }
    message
}

/// `a, b, c`, or the first [`LISTED_NAMES`] and how many more.
fn list_names(names: &[&str]) -> String {
    if names.len() <= LISTED_NAMES {
        names.join(", ")
    } else {
        format!(
            "{}, … ({} more)",
            names[..LISTED_NAMES].join(", "),
            names.len() - LISTED_NAMES
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_sdk::hierarchy::Area;

    /// italy → milan{m1,m2}, rome{r1,r2}, turin{t1}.
    fn italy() -> Infrastructure {
        let city = |name: &str, districts: &[&str]| {
            districts
                .iter()
                .fold(Area::new(name), |city, d| city.with_area(Area::new(*d)))
        };
        let root = Area::new("italy")
            .with_area(city("milan", &["m1", "m2"]))
            .with_area(city("rome", &["r1", "r2"]))
            .with_area(city("turin", &["t1"]));
        Infrastructure::new(["country", "city", "district"], root).unwrap()
    }

    /// `--inEvery`, `--inAreas`, `--exceptIn`, and what to expect.
    type Case<'a, T> = (Option<&'a str>, &'a [&'a str], &'a [&'a str], T);

    fn selection(level: Option<&str>, in_areas: &[&str], except_in: &[&str]) -> Selection {
        Selection {
            level: level.map(str::to_owned),
            in_areas: in_areas.iter().map(|s| s.to_string()).collect(),
            except_in: except_in.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn every_combination_of_the_flags() {
        let infra = italy();
        // (--inEvery, --inAreas, --exceptIn, expected nodes)
        let cases: &[Case<&[&str]>] = &[
            // No flags: the lowest level everywhere.
            (None, &[], &[], &["m1", "m2", "r1", "r2", "t1"]),
            // --inEvery each level.
            (Some("country"), &[], &[], &["italy"]),
            (Some("city"), &[], &[], &["milan", "rome", "turin"]),
            (Some("district"), &[], &[], &["m1", "m2", "r1", "r2", "t1"]),
            // --inAreas single, multiple, nested, the root, a leaf.
            (None, &["milan"], &[], &["m1", "m2"]),
            (None, &["milan", "turin"], &[], &["m1", "m2", "t1"]),
            (None, &["rome", "milan"], &[], &["m1", "m2", "r1", "r2"]),
            (None, &["milan", "m1"], &[], &["m1", "m2"]),
            (
                None,
                &["italy", "rome"],
                &[],
                &["m1", "m2", "r1", "r2", "t1"],
            ),
            (None, &["italy"], &[], &["m1", "m2", "r1", "r2", "t1"]),
            (None, &["r2"], &[], &["r2"]),
            (Some("city"), &["rome"], &[], &["rome"]),
            (Some("city"), &["italy"], &[], &["milan", "rome", "turin"]),
            (Some("country"), &["italy"], &[], &["italy"]),
            // --exceptIn single, multiple, nested, a leaf.
            (None, &[], &["milan"], &["r1", "r2", "t1"]),
            (None, &[], &["milan", "rome"], &["t1"]),
            (None, &[], &["m1", "r2"], &["m2", "r1", "t1"]),
            (None, &[], &["rome", "r1"], &["m1", "m2", "t1"]),
            (Some("city"), &[], &["turin"], &["milan", "rome"]),
            // A district excluded does not remove its city.
            (Some("city"), &[], &["m1"], &["milan", "rome", "turin"]),
            // Both: --exceptIn wins over --inAreas.
            (None, &["milan"], &["m2"], &["m1"]),
            (None, &["milan", "rome"], &["r1", "m2"], &["m1", "r2"]),
            (None, &["milan", "rome"], &["rome"], &["m1", "m2"]),
            (Some("city"), &["italy"], &["rome"], &["milan", "turin"]),
            // An --exceptIn area not on the path of any selected node.
            (None, &["rome"], &["m1"], &["r1", "r2"]),
            (None, &["rome"], &["turin"], &["r1", "r2"]),
            (Some("city"), &["milan"], &["r1"], &["milan"]),
        ];
        for (level, in_areas, except_in, expected) in cases {
            let selection = selection(*level, in_areas, except_in);
            let names: Vec<&str> = select_nodes(&infra, &selection)
                .unwrap_or_else(|e| panic!("{selection:?}: {e}"))
                .iter()
                .map(|node| node.name())
                .collect();
            assert_eq!(&names, expected, "{selection:?}");
        }
    }

    #[test]
    fn empty_selections_are_errors_that_say_why() {
        let infra = italy();
        let cases: &[Case<&str>] = &[
            // Excluding everything.
            (None, &[], &["italy"], "outside italy (--exceptIn)"),
            (None, &["milan"], &["milan"], "lies in milan (--inAreas)"),
            (None, &["m1"], &["milan"], "outside milan (--exceptIn)"),
            // An area above the level... of which no node is in a leaf's subtree.
            (Some("city"), &["m1"], &[], "lies in m1 (--inAreas)"),
            (
                Some("country"),
                &["rome"],
                &[],
                "the nodes at level \"country\" are: italy",
            ),
        ];
        for (level, in_areas, except_in, wanted) in cases {
            let selection = selection(*level, in_areas, except_in);
            match select_nodes(&infra, &selection) {
                Err(Error::Usage(message)) => {
                    assert!(message.starts_with("no node to deploy to"), "{message}");
                    assert!(message.contains(wanted), "{selection:?}: {message}");
                }
                other => panic!("{selection:?}: expected a usage error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_level_without_nodes_is_an_empty_selection() {
        let root = Area::new("italy").with_area(Area::new("milan"));
        let infra = Infrastructure::new(["country", "city", "district"], root).unwrap();
        let Err(Error::Usage(message)) = select_nodes(&infra, &Selection::default()) else {
            panic!("expected a usage error")
        };
        assert!(
            message.contains("has no node at level \"district\" at all"),
            "{message}"
        );
    }

    #[test]
    fn unknown_levels_and_areas_are_named_with_the_valid_ones() {
        let infra = italy();
        let Err(Error::Usage(message)) = select_nodes(&infra, &selection(Some("block"), &[], &[]))
        else {
            panic!("expected a usage error")
        };
        assert_eq!(
            message,
            "no level named \"block\" in the hierarchy (--inEvery); the levels are: country, city, district"
        );

        let Err(Error::Usage(message)) =
            select_nodes(&infra, &selection(None, &["paris", "milan"], &["lyon"]))
        else {
            panic!("expected a usage error")
        };
        assert_eq!(
            message,
            "no area named \"paris\" (--inAreas), \"lyon\" (--exceptIn) in the hierarchy; \
             the areas are: italy, milan, m1, m2, rome, r1, r2, turin, t1"
        );
    }

    #[test]
    fn long_lists_of_valid_names_are_cut() {
        let root = (0..50).fold(Area::new("cloud"), |root, i| {
            root.with_area(Area::new(format!("edge-{i}")))
        });
        let infra = Infrastructure::new(["cloud", "edge"], root).unwrap();
        let Err(Error::Usage(message)) = select_nodes(&infra, &selection(None, &["x"], &[])) else {
            panic!("expected a usage error")
        };
        assert!(message.ends_with("edge-18, … (31 more)"), "{message}");
    }

    #[test]
    fn describe_names_the_flags() {
        let infra = italy();
        assert_eq!(Selection::default().describe(&infra), "level \"district\"");
        assert_eq!(
            selection(Some("city"), &["italy"], &["rome", "turin"]).describe(&infra),
            "level \"city\" in italy except in rome, turin"
        );
    }
}
