//! Unit tests of the simulation: determinism, caps, conservation under migration, requests,
//! news and descriptions.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use worldfleet_domain::PartitionUid;

use super::*;
use crate::error::EcologyError;
use crate::rules::{BUILTIN_RULES_TOML, Rules};

fn uid(raw: &str) -> PartitionUid {
    PartitionUid::parse(raw).unwrap()
}

fn rules() -> Rules {
    Rules::builtin().unwrap()
}

fn founders(counts: &[(&str, u32)]) -> Vec<Founders> {
    counts
        .iter()
        .map(|(species, count)| Founders {
            species: (*species).to_owned(),
            count: *count,
        })
        .collect()
}

fn busy_cell(rules: &Rules) -> CellState {
    genesis(
        uid("realm-1/zone-2/cell-3"),
        300,
        vec![uid("realm-1/zone-2/cell-4"), uid("realm-1/zone-3/cell-1")],
        &founders(&[("glimmerfox", 80), ("skitterwing", 90), ("mossback", 30)]),
        rules,
    )
    .unwrap()
}

fn adult(id: &str, species: &str) -> Creature {
    let id = CreatureId::parse(id).unwrap();
    Creature {
        id: id.clone(),
        species: species.to_owned(),
        genes: Genome::from_array([8; GENE_COUNT]),
        age: 100,
        energy: 120,
        lineage: Lineage {
            parents: Vec::new(),
            root: id,
            generation: 0,
        },
    }
}

fn bytes(outcome: &TickOutcome) -> Vec<u8> {
    serde_json::to_vec(outcome).unwrap()
}

#[test]
fn genesis_is_reproducible_and_valid() {
    let rules = rules();
    let cell = busy_cell(&rules);
    assert_eq!(cell, busy_cell(&rules));
    assert_eq!(cell.creatures.len(), 200);
    assert_eq!(cell.census()["glimmerfox"], 80);
    assert_eq!(cell.census_baseline, cell.census());
    assert!(
        genesis(
            uid("realm/zone"),
            10,
            Vec::new(),
            &founders(&[("glimmerfox", 1)]),
            &rules
        )
        .is_err()
    );
    assert!(matches!(
        genesis(
            uid("r/z/c"),
            10,
            Vec::new(),
            &founders(&[("dragon", 1)]),
            &rules
        ),
        Err(EcologyError::UnknownSpecies(_))
    ));
}

#[test]
fn a_tick_rerun_on_the_same_state_is_byte_identical() {
    let rules = rules();
    let cell = busy_cell(&rules);
    let inputs = TickInputs {
        tick: 1,
        arrivals: vec![Migrant {
            source: uid("realm-1/zone-2/cell-4"),
            destination: cell.cell.clone(),
            departed_tick: 9,
            creature: adult("realm-1/zone-2/cell-4~0~7", "glimmerfox"),
        }],
        captures: Vec::new(),
        breed_requests: Vec::new(),
    };
    let first = tick(&cell, &inputs, &rules).unwrap();
    let again = tick(&cell, &inputs, &rules).unwrap();
    assert_eq!(bytes(&first), bytes(&again));
    assert!(first.counts.balanced());
    assert!(!first.births.is_empty(), "a busy cell breeds");

    // A chain of ticks, then tick 2 re-delivered on the state tick 1 wrote.
    let second = tick(
        &first.next,
        &TickInputs {
            tick: 2,
            ..TickInputs::default()
        },
        &rules,
    )
    .unwrap();
    let second_again = tick(
        &first.next,
        &TickInputs {
            tick: 2,
            ..TickInputs::default()
        },
        &rules,
    )
    .unwrap();
    assert_eq!(bytes(&second), bytes(&second_again));
    // Different ticks draw different streams.
    assert_ne!(bytes(&first), bytes(&second));
}

#[test]
fn input_order_does_not_change_the_outcome() {
    let rules = rules();
    let cell = busy_cell(&rules);
    let ids: Vec<CreatureId> = cell.creatures.iter().map(|c| c.id.clone()).collect();
    let arrivals: Vec<Migrant> = (0..4)
        .map(|index| Migrant {
            source: uid("realm-1/zone-3/cell-1"),
            destination: cell.cell.clone(),
            departed_tick: 3,
            creature: adult(&format!("realm-1/zone-3/cell-1~0~{index}"), "skitterwing"),
        })
        .collect();
    let captures: Vec<CaptureRequest> = (0..3)
        .map(|index| CaptureRequest {
            request_id: format!("cap-{index}"),
            player_id: "player-1".into(),
            creature_id: ids[index * 10].clone(),
        })
        .collect();
    let mut inputs = TickInputs {
        tick: 1,
        arrivals,
        captures,
        breed_requests: Vec::new(),
    };
    let forward = tick(&cell, &inputs, &rules).unwrap();
    inputs.arrivals.reverse();
    inputs.captures.reverse();
    let backward = tick(&cell, &inputs, &rules).unwrap();
    assert_eq!(bytes(&forward), bytes(&backward));
    assert_eq!(forward.captured.len(), 3);
    assert_eq!(forward.counts.arrived, 4);
}

#[test]
fn ticks_must_come_in_order() {
    let rules = rules();
    let cell = busy_cell(&rules);
    for wrong in [0, 2, 7] {
        let error = tick(
            &cell,
            &TickInputs {
                tick: wrong,
                ..TickInputs::default()
            },
            &rules,
        )
        .unwrap_err();
        assert_eq!(
            error,
            EcologyError::TickOutOfOrder {
                expected: 1,
                got: wrong
            }
        );
    }
}

#[test]
fn invalid_state_is_refused_not_panicked_on() {
    let rules = rules();
    let mut cell = busy_cell(&rules);
    cell.creatures.push(cell.creatures[0].clone());
    let inputs = TickInputs {
        tick: 1,
        ..TickInputs::default()
    };
    assert!(matches!(
        tick(&cell, &inputs, &rules),
        Err(EcologyError::InvalidCell { .. })
    ));
    let mut cell = busy_cell(&rules);
    cell.creatures[0].species = "dragon".into();
    assert!(tick(&cell, &inputs, &rules).is_err());
    let mut cell = busy_cell(&rules);
    cell.population_cap = 0;
    assert!(tick(&cell, &inputs, &rules).is_err());
    let mut cell = busy_cell(&rules);
    cell.neighbours.push(cell.cell.clone());
    assert!(tick(&cell, &inputs, &rules).is_err());
    let mut cell = busy_cell(&rules);
    cell.creatures[0].genes.size = 200;
    assert!(tick(&cell, &inputs, &rules).is_err());
}

#[test]
fn population_cap_is_respected_and_culls_the_frailest_first() {
    let rules = rules();
    let cell = genesis(
        uid("r/z/crowded"),
        20,
        Vec::new(),
        &founders(&[("skitterwing", 20)]),
        &rules,
    )
    .unwrap();
    let arrivals: Vec<Migrant> = (0..15)
        .map(|index| {
            let mut creature = adult(&format!("r/z/other~0~{index}"), "skitterwing");
            creature.age = 200;
            creature.energy = 10 + index;
            Migrant {
                source: uid("r/z/other"),
                destination: cell.cell.clone(),
                departed_tick: 0,
                creature,
            }
        })
        .collect();
    let outcome = tick(
        &cell,
        &TickInputs {
            tick: 1,
            arrivals,
            ..TickInputs::default()
        },
        &rules,
    )
    .unwrap();
    assert!(outcome.next.creatures.len() <= 20);
    let species = rules.species("skitterwing").unwrap();
    let survivors_max = outcome
        .next
        .creatures
        .iter()
        .map(|creature| creature.frailty(species))
        .max()
        .unwrap();
    let overpopulation: Vec<&Culled> = outcome
        .culled
        .iter()
        .filter(|culled| culled.reason == CullReason::Overpopulation)
        .collect();
    assert!(!overpopulation.is_empty());
    for culled in overpopulation {
        assert!(culled.creature.frailty(species) >= survivors_max);
    }
    // Many ticks of a fertile species never exceed the cap.
    let mut cell = outcome.next;
    for next_tick in 2..60 {
        let inputs = TickInputs {
            tick: next_tick,
            ..TickInputs::default()
        };
        cell = tick(&cell, &inputs, &rules).unwrap().next;
        assert!(cell.creatures.len() <= 20, "tick {next_tick}");
    }
}

#[test]
fn player_breeding_makes_a_child_with_lineage() {
    let rules = rules();
    let mother = adult("r/z/c~0~1", "glimmerfox");
    let father = adult("r/z/c~0~2", "glimmerfox");
    let tortoise = adult("r/z/c~0~3", "mossback");
    let mut tortoise_adult = tortoise.clone();
    tortoise_adult.age = 500;
    let mut father = father;
    father.lineage.generation = 4;
    let cell = CellState {
        cell: uid("r/z/c"),
        tick: 10,
        population_cap: 50,
        neighbours: Vec::new(),
        creatures: vec![mother.clone(), father.clone(), tortoise_adult],
        census_baseline: BTreeMap::new(),
    };
    let request = |id: &str, a: &Creature, b: &Creature| BreedRequest {
        request_id: id.into(),
        player_id: "player-9".into(),
        parent_a: a.id.clone(),
        parent_b: b.id.clone(),
    };
    let outcome = tick(
        &cell,
        &TickInputs {
            tick: 11,
            breed_requests: vec![
                request("req-1", &father, &mother),
                request("req-1", &father, &mother),
                request("req-2", &mother, &mother),
                request("req-3", &mother, &tortoise),
                request("req-4", &mother, &father),
                request("req-5", &mother, &adult("r/z/c~0~99", "glimmerfox")),
            ],
            ..TickInputs::default()
        },
        &rules,
    )
    .unwrap();
    let requested: Vec<&Birth> = outcome
        .births
        .iter()
        .filter(|birth| birth.request_id.is_some())
        .collect();
    assert_eq!(requested.len(), 1);
    let birth = requested[0];
    assert_eq!(birth.request_id.as_deref(), Some("req-1"));
    assert_eq!(birth.parents, [mother.id.clone(), father.id.clone()]);
    let child = outcome
        .next
        .creatures
        .iter()
        .find(|creature| creature.id == birth.child)
        .expect("the child lives in the cell");
    assert_eq!(child.lineage.generation, 5);
    assert_eq!(
        child.lineage.parents,
        vec![mother.id.clone(), father.id.clone()]
    );
    assert_eq!(child.age, 0);
    let reasons: BTreeMap<String, Vec<RejectReason>> =
        outcome
            .rejected
            .iter()
            .fold(BTreeMap::new(), |mut reasons, rejection| {
                reasons
                    .entry(rejection.key.clone())
                    .or_default()
                    .push(rejection.reason);
                reasons
            });
    assert_eq!(reasons["req-1"], vec![RejectReason::DuplicateRequest]);
    assert_eq!(reasons["req-2"], vec![RejectReason::SameParent]);
    assert_eq!(reasons["req-3"], vec![RejectReason::SpeciesMismatch]);
    assert_eq!(reasons["req-4"], vec![RejectReason::AlreadyBred]);
    assert_eq!(reasons["req-5"], vec![RejectReason::NotInCell]);
}

#[test]
fn a_high_mutation_rate_founds_lineages_and_makes_news() {
    let text = BUILTIN_RULES_TOML.replace("mutation_permille = 40", "mutation_permille = 1000");
    let rules = Rules::from_toml_str(&text).unwrap();
    let cell = CellState {
        cell: uid("r/z/c"),
        tick: 0,
        population_cap: 50,
        neighbours: Vec::new(),
        creatures: vec![
            adult("r/z/c~0~1", "glimmerfox"),
            adult("r/z/c~0~2", "glimmerfox"),
        ],
        census_baseline: BTreeMap::from([("glimmerfox".to_owned(), 2)]),
    };
    let outcome = tick(
        &cell,
        &TickInputs {
            tick: 1,
            breed_requests: vec![BreedRequest {
                request_id: "req-1".into(),
                player_id: "p".into(),
                parent_a: CreatureId::parse("r/z/c~0~1").unwrap(),
                parent_b: CreatureId::parse("r/z/c~0~2").unwrap(),
            }],
            ..TickInputs::default()
        },
        &rules,
    )
    .unwrap();
    let birth = &outcome.births[0];
    assert_eq!(birth.mutations, GENE_COUNT as u32);
    assert!(birth.founded_lineage);
    let child = outcome
        .next
        .creatures
        .iter()
        .find(|creature| creature.id == birth.child)
        .unwrap();
    assert_eq!(child.lineage.root, child.id);
    assert!(outcome.news.iter().any(|news| matches!(
        &news.kind,
        NewsKind::LineageFounded { root, .. } if *root == child.id
    )));
}

#[test]
fn captures_duplicates_and_misaddressed_migrants() {
    let rules = rules();
    let resident = adult("r/z/c~0~1", "glimmerfox");
    let cell = CellState {
        cell: uid("r/z/c"),
        tick: 0,
        population_cap: 50,
        neighbours: Vec::new(),
        creatures: vec![resident.clone()],
        census_baseline: BTreeMap::from([("glimmerfox".to_owned(), 1)]),
    };
    let migrant = |id: &str, destination: &str, species: &str| Migrant {
        source: uid("r/z/d"),
        destination: uid(destination),
        departed_tick: 0,
        creature: adult(id, species),
    };
    let outcome = tick(
        &cell,
        &TickInputs {
            tick: 1,
            arrivals: vec![
                migrant("r/z/c~0~1", "r/z/c", "glimmerfox"),
                migrant("r/z/d~0~5", "r/z/e", "glimmerfox"),
                migrant("r/z/d~0~6", "r/z/c", "dragon"),
            ],
            captures: vec![CaptureRequest {
                request_id: "cap-1".into(),
                player_id: "player-1".into(),
                creature_id: resident.id.clone(),
            }],
            ..TickInputs::default()
        },
        &rules,
    )
    .unwrap();
    assert_eq!(outcome.captured.len(), 1);
    assert_eq!(outcome.captured[0].creature.id, resident.id);
    assert!(outcome.next.creatures.is_empty());
    let by_key: BTreeMap<&str, &Rejection> = outcome
        .rejected
        .iter()
        .map(|rejection| (rejection.key.as_str(), rejection))
        .collect();
    assert_eq!(by_key["r/z/c~0~1"].reason, RejectReason::DuplicateCreature);
    assert!(by_key["r/z/c~0~1"].returned.is_none());
    assert_eq!(by_key["r/z/d~0~5"].reason, RejectReason::WrongDestination);
    assert!(by_key["r/z/d~0~5"].returned.is_some());
    assert_eq!(by_key["r/z/d~0~6"].reason, RejectReason::UnknownSpecies);
    assert!(by_key["r/z/d~0~6"].returned.is_some());
    assert!(
        outcome
            .news
            .iter()
            .any(|news| matches!(news.kind, NewsKind::LocalExtinction { .. }))
    );
}

#[test]
fn doubling_against_the_baseline_is_news_for_the_district_feed() {
    let rules = rules();
    let creatures: Vec<Creature> = (0..10)
        .map(|index| adult(&format!("r/zone-7/c~0~{index}"), "mossback"))
        .collect();
    let cell = CellState {
        cell: uid("r/zone-7/c"),
        tick: 0,
        population_cap: 50,
        neighbours: Vec::new(),
        creatures,
        census_baseline: BTreeMap::from([("mossback".to_owned(), 4)]),
    };
    let outcome = tick(
        &cell,
        &TickInputs {
            tick: 1,
            ..TickInputs::default()
        },
        &rules,
    )
    .unwrap();
    let doubled = outcome
        .news
        .iter()
        .find(|news| matches!(news.kind, NewsKind::PopulationDoubled { from: 4, .. }))
        .expect("doubling reported");
    assert_eq!(doubled.zone, uid("r/zone-7"));
    assert_eq!(doubled.feed().to_string(), "district:r/zone-7");
    assert!(
        doubled
            .headline
            .contains("mossback tortoise numbers doubled in zone r/zone-7")
    );
    let now = outcome.next.census()["mossback"];
    assert_eq!(outcome.next.census_baseline["mossback"], now);
}

#[test]
fn descriptions_fill_every_placeholder() {
    let rules = rules();
    let cell = busy_cell(&rules);
    for creature in cell.creatures.iter().take(20) {
        let text = describe(creature, &rules).unwrap();
        assert!(!text.contains('{'), "{text}");
        let species = rules.species(&creature.species).unwrap();
        assert!(text.contains(&species.display_name), "{text}");
        assert!(text.contains(&lineage_name(&creature.lineage.root)));
    }
    let mut stranger = cell.creatures[0].clone();
    stranger.species = "dragon".into();
    assert!(describe(&stranger, &rules).is_err());
    assert_eq!(
        lineage_name(&cell.creatures[0].id),
        lineage_name(&cell.creatures[0].id)
    );
}

/// A ring of cells in two zones, every cell a neighbour of the next and the previous.
fn world(realm: &str, cells: usize, per_cell: u32, rules: &Rules) -> Vec<CellState> {
    let uids: Vec<PartitionUid> = (0..cells)
        .map(|index| uid(&format!("{realm}/zone-{}/cell-{index}", index % 2)))
        .collect();
    (0..cells)
        .map(|index| {
            let mut neighbours = vec![uids[(index + 1) % cells].clone()];
            let previous = uids[(index + cells - 1) % cells].clone();
            if !neighbours.contains(&previous) && previous != uids[index] {
                neighbours.push(previous);
            }
            genesis(
                uids[index].clone(),
                per_cell * 2,
                neighbours,
                &founders(&[("skitterwing", per_cell), ("glimmerfox", per_cell / 2)]),
                rules,
            )
            .unwrap()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Creatures are conserved under migration: every tick balances, and across the world
    /// `alive + in flight = founders + births - deaths - culls - captures`, with no creature
    /// ever in two places at once.
    #[test]
    fn migration_conserves_creatures(
        seed in "[a-z0-9]{1,12}",
        cells in 3_usize..6,
        per_cell in 4_u32..30,
        ticks in 5_u64..25,
    ) {
        let rules = rules();
        let mut states = world(&format!("realm-{seed}"), cells, per_cell, &rules);
        let initial: u64 = states.iter().map(|cell| cell.creatures.len() as u64).sum();
        let mut in_flight: Vec<Migrant> = Vec::new();
        let (mut born, mut removed) = (0_u64, 0_u64);
        let mut total_migrations = 0_u64;
        for tick_number in 1..=ticks {
            let mut arriving: BTreeMap<PartitionUid, Vec<Migrant>> = BTreeMap::new();
            for migrant in in_flight.drain(..) {
                arriving.entry(migrant.destination.clone()).or_default().push(migrant);
            }
            let mut next_states = Vec::with_capacity(states.len());
            for state in &states {
                let inputs = TickInputs {
                    tick: tick_number,
                    arrivals: arriving.remove(&state.cell).unwrap_or_default(),
                    ..TickInputs::default()
                };
                let outcome = tick(state, &inputs, &rules).unwrap();
                prop_assert!(outcome.counts.balanced());
                prop_assert!(outcome.rejected.is_empty());
                prop_assert!(outcome.next.creatures.len() <= state.population_cap as usize);
                for migrant in &outcome.emigrants {
                    prop_assert!(state.neighbours.contains(&migrant.destination));
                    prop_assert_eq!(&migrant.source, &state.cell);
                }
                born += u64::from(outcome.counts.born);
                removed += u64::from(outcome.counts.died + outcome.counts.culled
                    + outcome.counts.captured);
                total_migrations += outcome.emigrants.len() as u64;
                in_flight.extend(outcome.emigrants);
                next_states.push(outcome.next);
            }
            prop_assert!(arriving.is_empty());
            states = next_states;

            let mut seen = BTreeSet::new();
            for creature in states.iter().flat_map(|cell| cell.creatures.iter())
                .chain(in_flight.iter().map(|migrant| &migrant.creature))
            {
                prop_assert!(seen.insert(creature.id.clone()), "duplicated {}", creature.id);
            }
            prop_assert_eq!(seen.len() as u64, initial + born - removed);
        }
        prop_assert!(total_migrations > 0 || ticks < 10 || per_cell < 10);
    }
}
