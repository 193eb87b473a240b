//! Checks both sides run on the numbers that cross the boundary: the SDK on the inputs a
//! plugin receives, the host on the gradients and tuples it gets back.

/// Index of the first NaN or infinite value. Written as a branch-free scan first, because it
/// runs on every batch in both directions and must cost next to nothing.
///
/// ```
/// assert_eq!(dmlbench_abi::first_non_finite(&[1.0, f32::NAN, f32::INFINITY]), Some(1));
/// assert_eq!(dmlbench_abi::first_non_finite(&[0.0, -1e38]), None);
/// ```
pub fn first_non_finite(values: &[f32]) -> Option<usize> {
    if values.iter().fold(true, |ok, v| ok & v.is_finite()) { None } else { values.iter().position(|v| !v.is_finite()) }
}

#[cfg(test)]
mod tests {
    use super::first_non_finite;
    use crate::Status;

    #[test]
    fn finds_the_first_of_each_kind_of_non_finite_value() {
        assert_eq!(first_non_finite(&[]), None);
        assert_eq!(first_non_finite(&[f32::MAX, f32::MIN_POSITIVE, -0.0]), None);
        assert_eq!(first_non_finite(&[0.0, 0.0, f32::NEG_INFINITY, f32::NAN]), Some(2));
        assert_eq!(first_non_finite(&[f32::NAN]), Some(0));
    }

    #[test]
    fn every_status_has_a_name() {
        let names =
            [Status::OK, Status::BAD_CONFIG, Status::BAD_INPUT, Status::FAILED, Status::PANICKED, Status::UNSUPPORTED]
                .map(Status::name);
        assert_eq!(names, ["ok", "bad config", "bad input", "failed", "panicked", "unsupported"]);
        assert_eq!(Status(99).name(), "unknown status");
    }
}
