//! Bad input is a typed reject, never a panic: commands with every field
//! drawn from its whole range, against a small engine whose pool and level
//! tables fill up.

use fep_engine::{
    BalanceQuery, BookQuery, Cancel, Command, Config, Engine, Event, NewOrder, Replace, Side, Tif,
};
use proptest::prelude::*;

fn any_command() -> impl Strategy<Value = Command> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let tif = prop_oneof![Just(Tif::Day), Just(Tif::Ioc)];
    // Small values collide with the state often; extremes test the edges.
    let account = prop_oneof![0u32..=4, any::<u32>()];
    let id = prop_oneof![0u64..=40, any::<u64>()];
    let price = prop_oneof![-2i64..=20, any::<i64>()];
    let qty = prop_oneof![0u64..=20, any::<u64>()];
    let instrument = prop_oneof![0u32..=3, any::<u32>()];
    prop_oneof![
        (
            account.clone(),
            id.clone(),
            instrument.clone(),
            side,
            tif,
            price.clone(),
            qty.clone()
        )
            .prop_map(|(account, cl_ord_id, instrument, side, tif, price, qty)| {
                Command::NewOrder(NewOrder {
                    account,
                    cl_ord_id,
                    instrument,
                    side,
                    tif,
                    price,
                    qty,
                })
            }),
        (account.clone(), id.clone(), id.clone()).prop_map(
            |(account, cl_ord_id, orig_cl_ord_id)| {
                Command::Cancel(Cancel {
                    account,
                    cl_ord_id,
                    orig_cl_ord_id,
                })
            }
        ),
        (account.clone(), id.clone(), id, price, qty).prop_map(
            |(account, cl_ord_id, orig_cl_ord_id, price, qty)| {
                Command::Replace(Replace {
                    account,
                    cl_ord_id,
                    orig_cl_ord_id,
                    price,
                    qty,
                })
            }
        ),
        (instrument, any::<u16>())
            .prop_map(|(instrument, depth)| Command::BookQuery(BookQuery { instrument, depth })),
        (account, any::<u32>())
            .prop_map(|(account, asset)| Command::BalanceQuery(BalanceQuery { account, asset })),
    ]
}

proptest! {
    #[test]
    fn any_command_stream_gets_answers_and_never_a_panic(
        commands in prop::collection::vec(any_command(), 1..300),
    ) {
        let config = Config {
            instruments: 2,
            accounts: 3,
            cash: i64::MAX / 3,
            units: i64::MAX / 3,
            orders_max: 8,
            levels_max: 3,
        };
        let mut engine = Engine::new(config).unwrap();
        let mut events: Vec<Event> = Vec::new();
        for command in &commands {
            events.clear();
            engine.handle(command, &mut events);
            prop_assert!(!events.is_empty(), "every request gets a first answer");
        }
        let mut bytes = Vec::new();
        engine.snapshot(&mut bytes);
        let restored = Engine::restore(config, &bytes);
        prop_assert!(restored.is_ok(), "{:?}", restored.err());
    }
}
