use nightshift_plan::Serial;

/// Splits `hosts` into rollout batch sizes as `serial` says. Each entry of a
/// canary list sizes one batch (percentages of the whole target set); the
/// last entry repeats until every host is covered. No serial means one batch.
pub fn batches(hosts: usize, serial: Option<&Serial>) -> Vec<usize> {
    let Some(Serial(sizes)) = serial else {
        return if hosts == 0 { vec![] } else { vec![hosts] };
    };
    let mut left = hosts;
    let mut out = Vec::new();
    let mut sizes = sizes.iter().copied();
    let mut last = None;
    while left > 0 {
        let size = sizes.next().or(last).map_or(left, |t| t.of(hosts).max(1));
        last = Some(nightshift_plan::Threshold::Count(size));
        let take = size.min(left);
        out.push(take);
        left -= take;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_plan::Threshold::{Count, Percent};

    #[test]
    fn no_serial_is_one_batch() {
        assert_eq!(batches(7, None), vec![7]);
        assert_eq!(batches(0, None), Vec::<usize>::new());
    }

    #[test]
    fn quarter_of_twelve_is_four_batches_of_three() {
        assert_eq!(
            batches(12, Some(&Serial(vec![Percent(25.0)]))),
            vec![3, 3, 3, 3]
        );
    }

    #[test]
    fn canary_then_ten_percent_then_the_rest() {
        let serial = Serial(vec![Count(1), Percent(10.0), Percent(100.0)]);
        assert_eq!(batches(40, Some(&serial)), vec![1, 4, 35]);
    }

    #[test]
    fn last_size_repeats() {
        let serial = Serial(vec![Count(1), Count(2)]);
        assert_eq!(batches(6, Some(&serial)), vec![1, 2, 2, 1]);
    }

    #[test]
    fn every_host_lands_in_exactly_one_batch() {
        for hosts in 0..60 {
            for serial in [
                Serial(vec![Percent(33.0)]),
                Serial(vec![Count(1), Percent(10.0)]),
                Serial(vec![Count(0)]),
            ] {
                assert_eq!(batches(hosts, Some(&serial)).iter().sum::<usize>(), hosts);
            }
        }
    }
}
