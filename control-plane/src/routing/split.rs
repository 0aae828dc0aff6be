//! How a service's requests are split between its revisions, from where
//! its rollout stands: the [`RevisionSplit`] that `table` turns into
//! weights. Pure.
//!
//! - No rollout moving the service, or a rolling one: every revision in
//!   proportion to its live allocations (so a rolling update shifts traffic
//!   as it replaces allocations, one healthy allocation at a time).
//! - Blue-green: everything to the old revision until the switch, then
//!   everything to the new one (the old set stays up with no traffic for an
//!   instant rollback); reverting switches back. One atomic change each way.
//! - Canary: the canaries' share of the replicas at first, then each
//!   promotion step's percentage (`steps: [10, 50, 100]`); reverting sends
//!   everything back to the old revision.

use super::table::{RevisionSplit, WHOLE};
use crate::deploy::model::UpdateStrategy;
use crate::deploy::rollout::{Deployment, Phase, Progress};
use std::collections::BTreeMap;

/// The split for a service whose live (meant to run) allocations are
/// `live`, one revision number per allocation, moved by `rollout` if a
/// deployment is active.
pub fn revision_split(rollout: Option<&Deployment>, live: &[u64]) -> RevisionSplit {
    let by_count = || {
        let mut split = BTreeMap::new();
        for revision in live {
            *split.entry(*revision).or_insert(0) += 1;
        }
        split
    };
    let Some(d) = rollout.filter(|d| !d.phase.is_terminal()) else {
        return by_count();
    };
    let (Ok(new), old) = (
        d.new_revision.parse::<u64>(),
        d.old_revision
            .as_deref()
            .and_then(|r| r.parse::<u64>().ok()),
    ) else {
        return by_count();
    };
    let phase = match (&d.phase, &d.paused_from) {
        (Phase::Paused, Some(from)) => from,
        (phase, _) => phase,
    };
    let Some(old) = old else {
        // A first deployment: there is nothing else to send requests to.
        return BTreeMap::from([(new, 1)]);
    };
    match (&d.strategy, &d.progress) {
        (_, _) if *phase == Phase::Reverting => BTreeMap::from([(old, 1), (new, 0)]),
        (UpdateStrategy::BlueGreen(_), Progress::BlueGreen { switched_at_ms, .. }) => {
            if switched_at_ms.is_some() {
                BTreeMap::from([(new, 1), (old, 0)])
            } else {
                BTreeMap::from([(old, 1), (new, 0)])
            }
        }
        (UpdateStrategy::Canary(canary), Progress::Canary { stage }) => {
            let new_share = canary_share(canary, d.replicas, *stage);
            BTreeMap::from([(new, new_share), (old, WHOLE - new_share)])
        }
        _ => by_count(),
    }
}

/// The new revision's share (parts per million) at canary `stage`: the
/// canaries' share of the replicas, then the step's percentage.
fn canary_share(canary: &crate::deploy::model::Canary, replicas: u32, stage: usize) -> u32 {
    let percent_to_ppm = |percent: u32| percent.min(100) * (WHOLE / 100);
    if stage == 0 {
        let replicas = replicas.max(1);
        let canaries = canary.canaries.clamp(1, replicas);
        let share = u64::from(canaries) * u64::from(WHOLE) / u64::from(replicas);
        return u32::try_from(share).unwrap_or(WHOLE);
    }
    match canary.steps.get(stage - 1).or(canary.steps.last()) {
        Some(percent) => percent_to_ppm(*percent),
        None => WHOLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::model::{BlueGreen, Canary, Rolling};
    use std::time::Duration;

    fn deployment(strategy: UpdateStrategy, old: Option<&str>) -> Deployment {
        Deployment::new("d1", "web", strategy, 4, old.map(str::to_owned), "8", 0)
    }

    fn blue_green() -> UpdateStrategy {
        UpdateStrategy::BlueGreen(BlueGreen {
            min_healthy_time: Duration::ZERO,
            healthy_deadline: Duration::from_secs(60),
            auto_promote: true,
            keep_old_for: Duration::from_secs(60),
            auto_revert: true,
        })
    }

    fn canary(steps: Vec<u32>) -> UpdateStrategy {
        UpdateStrategy::Canary(Canary {
            canaries: 1,
            steps,
            min_healthy_time: Duration::ZERO,
            healthy_deadline: Duration::from_secs(60),
            auto_promote: false,
            auto_revert: true,
        })
    }

    #[test]
    fn with_no_rollout_each_revision_weighs_its_live_allocations() {
        assert_eq!(
            revision_split(None, &[7, 7, 7, 8]),
            BTreeMap::from([(7, 3), (8, 1)])
        );
        assert_eq!(revision_split(None, &[]), BTreeMap::new());
    }

    #[test]
    fn a_rolling_update_shifts_traffic_with_the_allocations() {
        let d = deployment(UpdateStrategy::Rolling(Rolling::default()), Some("7"));
        assert_eq!(
            revision_split(Some(&d), &[7, 7, 8, 8]),
            BTreeMap::from([(7, 2), (8, 2)])
        );
    }

    #[test]
    fn a_finished_rollout_no_longer_decides() {
        let mut d = deployment(blue_green(), Some("7"));
        d.phase = Phase::Succeeded;
        assert_eq!(revision_split(Some(&d), &[8, 8]), BTreeMap::from([(8, 2)]));
    }

    #[test]
    fn a_first_deployment_sends_everything_to_the_new_revision() {
        let d = deployment(blue_green(), None);
        assert_eq!(revision_split(Some(&d), &[8]), BTreeMap::from([(8, 1)]));
    }

    #[test]
    fn blue_green_switches_all_traffic_at_once_and_back_on_revert() {
        let mut d = deployment(blue_green(), Some("7"));
        let live = [7, 7, 8, 8];
        assert_eq!(
            revision_split(Some(&d), &live),
            BTreeMap::from([(7, 1), (8, 0)])
        );
        d.progress = Progress::BlueGreen {
            promoted: true,
            switched_at_ms: Some(10),
        };
        assert_eq!(
            revision_split(Some(&d), &live),
            BTreeMap::from([(7, 0), (8, 1)])
        );
        d.phase = Phase::Reverting;
        assert_eq!(
            revision_split(Some(&d), &live),
            BTreeMap::from([(7, 1), (8, 0)])
        );
    }

    #[test]
    fn a_paused_rollout_keeps_the_split_of_the_phase_it_paused() {
        let mut d = deployment(blue_green(), Some("7"));
        d.progress = Progress::BlueGreen {
            promoted: true,
            switched_at_ms: Some(10),
        };
        d.paused_from = Some(Phase::Running);
        d.phase = Phase::Paused;
        assert_eq!(
            revision_split(Some(&d), &[7, 8]),
            BTreeMap::from([(7, 0), (8, 1)])
        );
        d.paused_from = Some(Phase::Reverting);
        assert_eq!(
            revision_split(Some(&d), &[7, 8]),
            BTreeMap::from([(7, 1), (8, 0)])
        );
    }

    #[test]
    fn canary_steps_set_the_new_revisions_share() {
        let mut d = deployment(canary(vec![10, 50, 100]), Some("7"));
        let live = [7, 7, 7, 7, 8];
        let at = |d: &Deployment| revision_split(Some(d), &live);
        // Stage 0: one canary among four replicas.
        assert_eq!(at(&d), BTreeMap::from([(7, 750_000), (8, 250_000)]));
        for (stage, new) in [(1, 100_000), (2, 500_000), (3, WHOLE), (9, WHOLE)] {
            d.progress = Progress::Canary { stage };
            assert_eq!(at(&d), BTreeMap::from([(7, WHOLE - new), (8, new)]));
        }
        d.phase = Phase::Reverting;
        assert_eq!(at(&d), BTreeMap::from([(7, 1), (8, 0)]));
    }

    #[test]
    fn canary_shares_add_up_whatever_the_replicas() {
        for replicas in 1..=7 {
            for canaries in 0..=8 {
                let mut d = deployment(canary(vec![1]), Some("7"));
                d.replicas = replicas;
                if let UpdateStrategy::Canary(c) = &mut d.strategy {
                    c.canaries = canaries;
                }
                let split = revision_split(Some(&d), &[7, 8]);
                assert_eq!(split.values().sum::<u32>(), WHOLE, "{replicas} {canaries}");
                assert!(split[&8] > 0 && split[&8] <= WHOLE);
            }
        }
    }

    #[test]
    fn unparsable_revision_ids_fall_back_to_allocation_counts() {
        let d = Deployment::new("d1", "web", blue_green(), 2, Some("x".into()), "y", 0);
        assert_eq!(
            revision_split(Some(&d), &[7, 8, 8]),
            BTreeMap::from([(7, 1), (8, 2)])
        );
    }
}
