//! The README's repository layout table is the workspace as it is: every workspace member has
//! a row (directly, or under a `dir/*` row), and every row names a path that exists.

use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn layout_rows(readme: &str) -> Vec<String> {
    let table = readme
        .split("## Repository layout")
        .nth(1)
        .expect("README has a Repository layout section");
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cell = line.split('|').nth(1)?.trim();
            let path = cell.strip_prefix('`')?.split('`').next()?;
            Some(path.trim_end_matches('/').to_owned())
        })
        .collect()
}

fn members(manifest: &str) -> Vec<String> {
    let list = manifest
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("the workspace lists its members");
    list.split(',')
        .map(|member| member.trim().trim_matches('"').to_owned())
        .filter(|member| !member.is_empty())
        .collect()
}

#[test]
fn every_workspace_member_has_a_row_and_every_row_exists() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let rows = layout_rows(&readme);
    assert!(rows.len() > 10, "the layout table was not found: {rows:?}");
    for row in &rows {
        let base = row.trim_end_matches("/*");
        assert!(
            Path::new(ROOT).join(base).exists(),
            "the README's layout names {row}, which does not exist"
        );
    }
    for member in members(&manifest) {
        let covered = rows.iter().any(|row| {
            row == &member
                || row
                    .strip_suffix("/*")
                    .is_some_and(|parent| Path::new(&member).parent() == Some(Path::new(parent)))
        });
        assert!(
            covered,
            "workspace member {member} has no row in the README's repository layout"
        );
    }
}
