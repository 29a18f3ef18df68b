//! The config loader, on any bytes: a config or a list of problems, never
//! a panic; libFuzzer's -timeout and -rss_limit_mb bound the time and
//! memory of each input. What loads is printed as `config check` prints
//! it, and that must load again as the same networks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(loaded) = dutnet::config::parse_str(text) {
        let printed = serde_yaml::to_string(&loaded).expect("a loaded config prints");
        let again = dutnet::config::parse_str(&printed)
            .unwrap_or_else(|e| panic!("the printed config is refused: {e}\n{printed}"));
        assert_eq!(again.networks, loaded.networks, "{printed}");
    }
});
