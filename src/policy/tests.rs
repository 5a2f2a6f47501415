use super::*;

#[test]
fn rotation_skips_ineligible_workers() {
    let mut rr = Picker::with_seed(1);
    let picks: Vec<_> = (0..6)
        .map(|_| rr.round_robin(3, |_| true).unwrap())
        .collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    let picks: Vec<_> = (0..4)
        .map(|_| rr.round_robin(3, |i| i != 1).unwrap())
        .collect();
    assert_eq!(picks, [0, 2, 0, 2]);
    assert_eq!(rr.round_robin(3, |_| false), None);
    assert_eq!(rr.round_robin(0, |_| true), None);
}

#[test]
fn least_loaded_takes_the_minimum_and_rotates_among_equals() {
    let mut p = Picker::with_seed(1);
    let load = [3u64, 1, 1, 5];
    let picks: Vec<_> = (0..4)
        .map(|_| p.least_loaded(4, |_| true, |i| load[i]).unwrap())
        .collect();
    assert_eq!(picks, [1, 2, 1, 2]);
    assert_eq!(p.least_loaded(4, |i| i == 3, |i| load[i]), Some(3));
    assert_eq!(p.least_loaded(4, |_| false, |i| load[i]), None);
    // All equal: plain rotation.
    let picks: Vec<_> = (0..3)
        .map(|_| p.least_loaded(3, |_| true, |_| 0).unwrap())
        .collect();
    let mut sorted = picks.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 1, 2], "{picks:?}");
}

#[test]
fn two_choices_never_picks_the_busiest_of_three_and_uses_every_candidate() {
    let mut p = Picker::with_seed(42);
    let load = [0u64, 0, 100];
    let mut seen = [0; 3];
    for _ in 0..1000 {
        seen[p.two_choices(3, |_| true, |i| load[i]).unwrap()] += 1;
    }
    // Worker 2 is always the loser of any pair it is drawn in.
    assert_eq!(seen[2], 0, "{seen:?}");
    assert!(seen[0] > 300 && seen[1] > 300, "{seen:?}");
    assert_eq!(p.two_choices(3, |i| i == 2, |i| load[i]), Some(2));
    assert_eq!(p.two_choices(3, |_| false, |i| load[i]), None);
}

#[test]
fn random_numbers_stay_in_range_and_spread() {
    let mut r = XorShift::new(0);
    let mut counts = [0u32; 4];
    for _ in 0..4000 {
        counts[r.below(4) as usize] += 1;
    }
    assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
}

#[test]
fn ack_gate_follows_nodes_free_list_and_queue() {
    let mut g: AckGate<&str> = AckGate::default();
    g.add(1);
    g.add(2);
    for c in ["a", "b", "c"] {
        g.push(c);
    }
    let all = |_| Eligibility::Now;
    // Each free worker gets one connection; the third waits in the master.
    assert_eq!(g.handoff_all(all), [(1, "a"), (2, "b")]);
    assert_eq!(g.queued(), 1);
    assert!(g.is_busy(1) && g.is_busy(2));
    // Worker 2 acknowledges first: it gets the waiting one.
    assert!(g.acknowledged(2));
    assert_eq!(g.handoff_all(all), [(2, "c")]);
    assert!(!g.acknowledged(7));
    // Worker 1 acknowledges with nothing waiting: it goes back to the free list.
    assert!(g.acknowledged(1));
    assert!(g.handoff_all(all).is_empty());
    g.push("d");
    assert_eq!(g.handoff_all(all), [(1, "d")]);
    // A removed worker is neither free nor busy.
    g.remove(2);
    g.push("e");
    assert!(g.handoff_all(all).is_empty());
    assert!(!g.acknowledged(2));
    // A worker that stops while free is dropped, not handed a connection.
    g.add(3);
    g.add(4);
    let not_3 = |w| {
        if w == 3 {
            Eligibility::Never
        } else {
            Eligibility::Now
        }
    };
    assert_eq!(g.handoff_all(not_3), [(4, "e")]);
    g.push("f");
    assert!(g.handoff_all(all).is_empty(), "3 left the gate");
    assert_eq!(g.take_queued(), ["f"]);
}

#[test]
fn ack_gate_keeps_a_free_worker_that_is_briefly_full() {
    // The defect this guards against: a free worker at its connection limit (or with a
    // full channel) was dropped from the free list and never put back, so once every
    // worker had been full the gate handed out nothing more.
    let mut g: AckGate<u32> = AckGate::default();
    g.add(1);
    g.add(2);
    g.push(10);
    let full = |_| Eligibility::Later;
    assert!(g.handoff_all(full).is_empty());
    assert_eq!(g.queued(), 1);
    // Room again: the first in line takes it, the other stays free.
    assert_eq!(g.handoff_all(|_| Eligibility::Now), [(1, 10)]);
    g.push(11);
    assert_eq!(g.handoff_all(|_| Eligibility::Now), [(2, 11)]);
}

#[test]
fn names_parse_back() {
    for p in Policy::ALL {
        assert_eq!(p.name().parse::<Policy>().unwrap(), *p);
        assert_eq!(
            Acceptance::from_code(p.acceptance().code()),
            Some(p.acceptance())
        );
    }
    assert!("fastest"
        .parse::<Policy>()
        .unwrap_err()
        .contains("round-robin"));
}
