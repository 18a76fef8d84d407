//! tmux versions: which releases dmucd's in-process tmux client speaks to (the daemon
//! decides its client mode with it; `dmucctl doctor` reports it). Pure: the caller runs
//! `tmux -V`.

/// A tmux release as (major, minor), from `tmux -V` ("tmux 3.3a", "tmux next-3.6"); `None`
/// for what names no release ("tmux master", "tmux openbsd-7.5").
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().nth(1)?;
    let v = v.strip_prefix("next-").unwrap_or(v);
    let (major, rest) = v.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Whether the in-process client may talk to a server of version `v`: only to the releases
/// whose client messages it implements and that are tested (3.2 to 3.5a: the imsg header with
/// a 16-bit length). 3.6 changed that header without changing the protocol number, so a 3.6+
/// server would misread us and drop us, and 3.6-3.6b crash when they drop a half-identified
/// control client (which, on adoption, killed every component): unknown versions get `tmux -C`.
pub fn native_speaks(v: Option<(u32, u32)>) -> bool {
    v.is_some_and(|v| ((3, 2)..(3, 6)).contains(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_process_client_is_only_for_the_versions_it_speaks() {
        for (text, v, native) in [
            ("tmux 3.2a\n", Some((3, 2)), true),
            ("tmux 3.3a\n", Some((3, 3)), true),
            ("tmux 3.4\n", Some((3, 4)), true),
            ("tmux 3.5a\n", Some((3, 5)), true),
            // The new imsg header (3.6) and the crash on a dropped client (3.6-3.6b).
            ("tmux 3.6\n", Some((3, 6)), false),
            ("tmux 3.6b\n", Some((3, 6)), false),
            ("tmux next-3.6\n", Some((3, 6)), false),
            ("tmux 3.7c\n", Some((3, 7)), false),
            ("tmux 3.1c\n", Some((3, 1)), false),
            ("tmux 2.9\n", Some((2, 9)), false),
            ("tmux master\n", None, false),
            ("tmux openbsd-7.5\n", None, false),
            ("", None, false),
        ] {
            assert_eq!(parse_version(text), v, "{text:?}");
            assert_eq!(native_speaks(v), native, "{text:?}");
        }
    }
}
