//! The short form of the scale benchmark (`benches/scale.rs`): a node of a
//! few thousand sessions, its manager a process of its own; checks that
//! every figure is produced and that each decision did what it should,
//! never how fast.

mod common;
mod scale_run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_run_measures_every_decision() {
    let options = scale_run::Options {
        sessions: 3000,
        sample: 100,
        manager: env!("CARGO_BIN_EXE_offloading-manager").into(),
        legacy: false,
        audit: true,
    };
    let figures = scale_run::run(&options).await;
    eprintln!("{}", scale_run::table(std::slice::from_ref(&figures)));
    assert_eq!(figures.gc_deleted, figures.gc_expected);
    assert_eq!(figures.gc_expected, 29);
    assert!(figures.policy_freed > 0);
    assert!(
        figures.calls > 0 && figures.calls_failed == 0,
        "{figures:?}"
    );
    assert!(figures.manager_peak_rss_kib > 0);
    assert!(figures.lru_pick.is_some() && figures.audit.is_some());
}
