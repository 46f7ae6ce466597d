//! The risk configuration: the shipped example parses, and every mistake of
//! a bad file is reported, one line each, naming its key.

use fep_trading::risk::{Collar, RiskConfig, Throttle};

const EXAMPLE: &str = include_str!("../../docs/risk.example.toml");

/// A minimal good file: one client.
const ONE_CLIENT: &str = "[clients.a]\ntoken = \"ta\"\naccounts = [1]\n";

fn errors(text: &str) -> Vec<String> {
    match RiskConfig::parse(text) {
        Ok(c) => panic!("parsed, expected errors: {c:?}"),
        Err(e) => e.lines().to_vec(),
    }
}

fn check(text: &str, expect: &[&str]) {
    assert_eq!(errors(text), expect, "for:\n{text}");
}

#[test]
fn the_shipped_example_parses_with_defaults_and_overrides() {
    let c = RiskConfig::parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.is_open());
    assert!(!c.kill_switch());
    let [alice, bob] = c.clients() else {
        panic!("two clients expected: {:?}", c.clients());
    };
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.token.as_deref(), Some("alice-secret-token"));
    assert!(alice.accounts.contains(2) && alice.accounts.contains(19));
    assert!(!alice.accounts.contains(3) && !alice.accounts.contains(100));
    assert_eq!(alice.limits.max_qty, Some(100_000), "the default");
    assert_eq!(alice.limits.collar, Some(Collar::Bps(500)));
    assert_eq!(bob.limits.max_qty, Some(1_000), "bob's override");
    assert_eq!(bob.limits.collar, Some(Collar::Ticks(25)));
    assert_eq!(
        bob.limits.throttle,
        Some(Throttle {
            rate_per_s: 100,
            burst: 10
        })
    );
    assert_eq!(bob.limits.max_open_orders, Some(1_000), "the default");
    let bob_instruments = bob.limits.instruments.as_ref().unwrap();
    assert!(bob_instruments.contains(2) && !bob_instruments.contains(3));
    assert_eq!(c.reference_price(1), Some(10_000));
    assert_eq!(c.reference_price(3), None);
    assert!(c.describe().contains("2 client(s) (alice, bob)"));
}

#[test]
fn a_minimal_file_has_no_limits() {
    let c = RiskConfig::parse(ONE_CLIENT).unwrap();
    assert_eq!(c.clients()[0].limits, Default::default());
}

#[test]
fn the_open_configuration_says_so() {
    let c = RiskConfig::open(None);
    assert!(c.is_open());
    assert!(
        c.describe().contains("no configuration"),
        "{}",
        c.describe()
    );
    assert!(c.describe().contains("any token"));
    assert!(c.clients()[0].accounts.contains(u32::MAX));
    let t = RiskConfig::open(Some("s".into()));
    assert!(t.describe().contains("the configured token"));
}

#[test]
fn every_unknown_or_mistyped_key_is_reported_not_just_the_first() {
    check(
        "max_qtty = 3\nmax_qty = \"x\"\n[clients.a]\ntoken = \"ta\"\naccounts = [1]\n\
         foo = 1\nmax_qty = -1\n[clients.b]\ntoken = \"tb\"\naccounts = [2]\nkill_swich = true\n",
        &[
            "max_qtty: unknown key (did you mean max_qty?)",
            "max_qty: invalid type: string \"x\", expected u64",
            "clients.a.foo: unknown key",
            "clients.a.max_qty: invalid value: integer `-1`, expected u64",
            "clients.b.kill_swich: unknown key (did you mean kill_switch?)",
        ],
    );
}

#[test]
fn a_syntax_error_gives_its_line_and_column() {
    let e = errors("kill_switch = false\nmax_qty = = 3\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("TOML syntax, line 2, column "), "{e:?}");
}

#[test]
fn zero_limits_are_refused_by_key() {
    check(
        "max_qty = 0\nrate_per_s = 0\nburst = 0\n\
         [clients.a]\ntoken = \"ta\"\naccounts = [1]\nmax_open_orders = 0\nmax_notional = 0\n",
        &[
            "max_qty: must be at least 1",
            "rate_per_s: must be at least 1",
            "burst: must be at least 1",
            "clients.a.max_notional: must be at least 1",
            "clients.a.max_open_orders: must be at least 1",
        ],
    );
}

#[test]
fn duplicate_tokens_and_shared_accounts_name_both_clients() {
    check(
        "[clients.a]\ntoken = \"same\"\naccounts = [\"1-10\"]\n\
         [clients.b]\ntoken = \"same\"\naccounts = [11, \"5-6\"]\n\
         [clients.c]\ntoken = \"tc\"\naccounts = [8]\n",
        &[
            "clients.b.token: same token as clients.a",
            "clients.b.accounts: account 5 is also in clients.a",
            "clients.c.accounts: account 8 is also in clients.a",
        ],
    );
}

#[test]
fn bad_id_lists_report_each_entry() {
    check(
        "instruments = []\n[clients.a]\ntoken = \"ta\"\naccounts = [1, 2.5, \"3-2\", \"x\", 0]\n",
        &[
            "instruments: empty list",
            "clients.a.accounts[1]: expected an id or a range \"A-B\", found float",
            "clients.a.accounts[2]: \"3-2\": start above end",
            "clients.a.accounts[3]: \"x\" is not a range \"A-B\"",
            "clients.a.accounts[4]: 0 is not an id (1 ..= 4294967295)",
        ],
    );
}

#[test]
fn a_client_needs_a_token_and_accounts() {
    check(
        "[clients.a]\nmax_qty = 5\n[clients.b]\ntoken = \"\"\naccounts = [2]\n",
        &[
            "clients.a.token: missing (every client needs its own)",
            "clients.a.accounts: missing",
            "clients.b.token: must be 1 ..= 64 bytes",
        ],
    );
    check(
        "max_qty = 5\n",
        &["clients: no client configured (add a [clients.NAME] section)"],
    );
}

#[test]
fn a_rate_needs_a_burst_after_defaults_apply() {
    // The default burst completes a client's rate: no error for a.
    let ok = "burst = 5\n[clients.a]\ntoken = \"ta\"\naccounts = [1]\nrate_per_s = 10\n";
    assert_eq!(
        RiskConfig::parse(ok).unwrap().clients()[0].limits.throttle,
        Some(Throttle {
            rate_per_s: 10,
            burst: 5
        })
    );
    check(
        "[clients.a]\ntoken = \"ta\"\naccounts = [1]\nrate_per_s = 10\n",
        &["clients.a.rate_per_s: set without burst (set both, here or at the top level)"],
    );
    check(
        "rate_per_s = 1_000_000_001\nburst = 1\n[clients.a]\ntoken = \"ta\"\naccounts = [1]\n",
        &["rate_per_s: above 1000000000"],
    );
}

#[test]
fn a_collar_is_in_bps_or_ticks_not_both() {
    check(
        "price_collar_bps = 5\nprice_collar_ticks = 5\n[clients.a]\ntoken = \"ta\"\naccounts = [1]\n",
        &["price_collar_ticks: set with price_collar_bps in the same section: choose one"],
    );
    // A client's ticks replace the default's bps.
    let c = RiskConfig::parse(
        "price_collar_bps = 5\n[clients.a]\ntoken = \"ta\"\naccounts = [1]\nprice_collar_ticks = 9\n",
    )
    .unwrap();
    assert_eq!(c.clients()[0].limits.collar, Some(Collar::Ticks(9)));
}

#[test]
fn reference_prices_need_instrument_ids_and_positive_prices() {
    check(
        &format!("{ONE_CLIENT}[reference_prices]\nx = 5\n2 = 0\n3 = \"a\"\n4 = 7\n"),
        &[
            "reference_prices.2: price 0 is not above 0",
            "reference_prices.3: expected an integer price in ticks, found string",
            "reference_prices.x: not an instrument id (1 ..= 4294967295)",
        ],
    );
}

#[test]
fn an_error_line_never_spans_two_lines() {
    let text = "kill_switch = 3\n[clients.a]\ntoken = 5\naccounts = \"1\"\n";
    for line in errors(text) {
        assert!(!line.contains('\n'), "{line:?}");
        assert!(line.contains(':'), "names a key: {line:?}");
    }
}
