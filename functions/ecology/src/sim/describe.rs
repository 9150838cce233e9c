//! Creature descriptions from templates: the template tier of the description text. A model
//! tier can replace `describe` later; this one is deterministic and free.

use sha2::{Digest, Sha256};

use super::creature::{Creature, CreatureId, GENE_COUNT};
use crate::error::Result;
use crate::rules::Rules;

const SYLLABLES: [&str; 16] = [
    "ka", "ri", "mo", "ven", "tal", "shi", "dor", "el", "ux", "pa", "ny", "gro", "lu", "zen", "ar",
    "fi",
];

/// A pronounceable name for the lineage rooted at `root` ("Venkari"), stable forever.
pub fn lineage_name(root: &CreatureId) -> String {
    let digest = Sha256::digest(root.as_str().as_bytes());
    let mut name: String = digest[..3]
        .iter()
        .map(|byte| SYLLABLES[usize::from(byte & 0x0f)])
        .collect();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    name
}

/// The word for a gene value: low (0–4), middling (5–10) or high (11–15).
fn band(value: u8) -> usize {
    match value {
        0..=4 => 0,
        5..=10 => 1,
        _ => 2,
    }
}

/// Describes a creature from its species' template: `{species}`, `{lineage}`, `{generation}`,
/// `{age}` and one placeholder per gene (`{vigour}`, `{size}`, `{fertility}`, `{wanderlust}`,
/// `{hardiness}`) replaced by the rules' word for the gene's value. Unknown placeholders are
/// left as written.
pub fn describe(creature: &Creature, rules: &Rules) -> Result<String> {
    let species = rules.species(&creature.species)?;
    let words = &rules.gene_words;
    let gene_words: [&[String; 3]; GENE_COUNT] = [
        &words.vigour,
        &words.size,
        &words.fertility,
        &words.wanderlust,
        &words.hardiness,
    ];
    let mut text = species
        .description
        .replace("{species}", &species.display_name)
        .replace("{lineage}", &lineage_name(&creature.lineage.root))
        .replace("{generation}", &creature.lineage.generation.to_string())
        .replace("{age}", &creature.age.to_string());
    for ((name, value), choices) in super::Genome::NAMES
        .iter()
        .zip(creature.genes.to_array())
        .zip(gene_words)
    {
        text = text.replace(&format!("{{{name}}}"), &choices[band(value)]);
    }
    Ok(text)
}
