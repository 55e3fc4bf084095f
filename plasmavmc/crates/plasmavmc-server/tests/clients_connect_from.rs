//! The clients PlasmaVMC's server makes (ChainFire, FlareDB, IAM) leave from the local address
//! they are given, so an instance's traffic carries the address it serves on (what partitions
//! by address and the runner's source check rely on); without one, the system picks. The
//! PlasmaVMC client dials the address its address map gives for an instance (a proxy) while
//! the instance's own address stays what it names.

use std::net::IpAddr;
use std::time::Duration;

use chainfire_testkit::source_of_first_connection;

const FROM: &str = "127.0.0.7";

fn from() -> Option<IpAddr> {
    Some(FROM.parse().unwrap())
}

#[tokio::test]
async fn every_client_leaves_from_the_local_address_given() {
    for local in [from(), None] {
        let expected: IpAddr = local.unwrap_or("127.0.0.1".parse().unwrap());

        let chainfire = source_of_first_connection(|endpoint| async move {
            let config = chainfire_client::ClientConfig::new([endpoint])
                .with_local_address(local)
                .with_request_timeout(Duration::from_secs(30));
            let client = chainfire_client::Client::connect(config).await.unwrap();
            let _ = client.get("k").await;
        })
        .await;
        assert_eq!(chainfire.ip(), expected, "chainfire-client from {local:?}");

        let flaredb = source_of_first_connection(|endpoint| async move {
            let config = flaredb_client::ClientConfig::new([endpoint])
                .with_local_address(local)
                .with_request_timeout(Duration::from_secs(30));
            let client = flaredb_client::Client::connect(config).await.unwrap();
            let _ = client.get("k").await;
        })
        .await;
        assert_eq!(flaredb.ip(), expected, "flaredb-client from {local:?}");

        let iam = source_of_first_connection(|endpoint| async move {
            let mut config = iam_client::ClientConfig::new([endpoint]);
            config.call.local_address = local;
            let client = iam_client::Client::new(config).unwrap();
            let _ = client.authenticate(Default::default()).await;
        })
        .await;
        assert_eq!(iam.ip(), expected, "iam-client from {local:?}");
    }
}

#[tokio::test]
async fn the_plasmavmc_client_dials_the_mapped_address_from_the_local_address() {
    // The instance's own address: nothing listens there, so only the mapped dial can connect.
    let node = "127.0.0.9:1".to_owned();
    let source = source_of_first_connection(|proxy| async move {
        let credentials = plasmavmc_client::Credentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        let client = plasmavmc_client::Client::new(
            plasmavmc_client::ClientConfig::new([node.clone()], credentials)
                .with_address_map([(node, proxy)])
                .with_local_address(from()),
        )
        .unwrap();
        let _ = client.list_vms().await;
    })
    .await;
    assert_eq!(source.ip().to_string(), FROM);
}
