//! When in each kline push period the symbols push their updates.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KlinePhase {
    /// Every symbol at the same millisecond (the start of the period): one burst per
    /// period, the hardest case for a consumer's latency.
    #[default]
    Aligned,
    /// Symbol `i` of `n` at millisecond `i * period / n` of the period: the pushes spread
    /// evenly over the period's milliseconds, as unrelated symbols arrive from an exchange.
    Spread,
}

impl KlinePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            KlinePhase::Aligned => "aligned",
            KlinePhase::Spread => "spread",
        }
    }
}

/// The kline push timer: the distinct millisecond offsets in the period at which some
/// symbol pushes, and which symbols push at each.
#[derive(Debug)]
pub(super) struct KlineSchedule {
    period_ms: i64,
    /// Distinct offsets in `[0, period_ms)`, ascending, each with its symbols.
    slots: Vec<(i64, Vec<usize>)>,
    /// Start of the current period and the next slot due in it.
    period_start_ms: i64,
    next_slot: usize,
}

impl KlineSchedule {
    pub(super) fn new(
        period_ms: i64,
        phase: KlinePhase,
        symbols: usize,
        start_time_ms: i64,
    ) -> Self {
        let period_ms = period_ms.max(1);
        let mut slots: Vec<(i64, Vec<usize>)> = Vec::new();
        for i in 0..symbols {
            let offset = match phase {
                KlinePhase::Aligned => 0,
                // i < symbols, so the offset is below the period.
                KlinePhase::Spread => (i as i64).saturating_mul(period_ms) / symbols as i64,
            };
            match slots.last_mut() {
                Some((last, members)) if *last == offset => members.push(i),
                _ => slots.push((offset, vec![i])),
            }
        }
        if slots.is_empty() {
            slots.push((0, Vec::new()));
        }
        let mut schedule = KlineSchedule {
            period_ms,
            slots,
            period_start_ms: start_time_ms.div_euclid(period_ms) * period_ms,
            next_slot: 0,
        };
        // The first push comes strictly after the start, as every other timer's.
        while schedule.next_ms() <= start_time_ms {
            schedule.step();
        }
        schedule
    }

    pub(super) fn next_ms(&self) -> i64 {
        self.period_start_ms + self.slots[self.next_slot].0
    }

    /// The symbols due at the next push; then moves to the one after.
    pub(super) fn members(&self) -> &[usize] {
        &self.slots[self.next_slot].1
    }

    pub(super) fn step(&mut self) {
        self.next_slot += 1;
        if self.next_slot == self.slots.len() {
            self.next_slot = 0;
            self.period_start_ms += self.period_ms;
        }
    }
}
