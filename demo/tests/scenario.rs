//! The demo's scenario end to end, on real processes, with every status
//! checked. The binaries it drives are built by `cargo test --workspace`.

use std::path::Path;

use edge_demo::{Demo, Tools, spoken};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_scenario() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tools = Tools::in_dir(&repository.join("target/debug"))
        .expect("run the suite with cargo test --workspace");
    let dir = repository.join(format!("target/demo-tests/{}", std::process::id()));
    let mut demo = Demo::set_up(repository, &dir, tools, &mut |line| eprintln!("{line}")).unwrap();
    let outcomes = demo
        .scenario(&spoken("one two three four five").unwrap(), &mut |o| {
            eprintln!("{o:?}")
        })
        .await
        .unwrap();
    let seen: Vec<(u16, usize, Option<&str>)> = outcomes
        .iter()
        .map(|o| (o.status, o.redirects, o.served_by.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (200, 0, None),          // upload in milan
            (208, 0, None),          // same request id
            (200, 0, None),          // concurrent writer, served after waiting in line
            (200, 0, None),          // speech-to-text
            (200, 0, None),          // download
            (200, 0, None),          // force-offload
            (200, 1, Some("italy")), // redirected, served above
            (200, 0, None),          // force-onload
            (200, 0, None),          // served in milan again
            (200, 0, None),          // garbage collector
            (404, 0, None),          // collected
        ],
        "{outcomes:#?}"
    );
    assert!(
        outcomes[1].detail.contains("original status 20"),
        "{:?}",
        outcomes[1]
    );
    assert!(outcomes[3].detail.contains("three"), "{:?}", outcomes[3]);
    assert_eq!(outcomes[4].detail, "hello from milan");
    assert!(outcomes[5].detail.contains("italy"), "{:?}", outcomes[5]);
    assert_eq!(outcomes[6].detail, "hello from milan");
    assert_eq!(outcomes[9].detail, "sessions deleted: 1");
    demo.down().unwrap();
}
