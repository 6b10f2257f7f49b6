//! The pinned scenarios of the Controller's entry point: it holds only a Channel's name, reads
//! the Channel from the API server, then reconciles it as read; one gone meanwhile is left alone.

use super::*;
use crate::controller::feed::channel_ref;
use crate::controller::reconcile::reconcile_on_demand;

#[tokio::test]
async fn the_controller_reads_the_channel_then_reconciles_it_as_read() {
    let s = Scenario::new(200).await;
    let shop = Arc::new(channel_ref("ns/shop"));
    reconcile_on_demand(shop.clone(), s.ctx.clone())
        .await
        .unwrap();
    s.api(&["GET channel", "PATCH channel"]);
    s.provider(&[]).await;
    reconcile_on_demand(shop, s.ctx.clone()).await.unwrap();
    let mut want = vec!["GET channel"];
    want.extend(CONNECT_API);
    s.api(&want);
    s.provider(&CONNECT).await;
}

#[tokio::test]
async fn a_channel_gone_before_its_reconcile_is_left_alone() {
    let s = Scenario::new(200).await;
    reconcile_on_demand(Arc::new(channel_ref("ns/gone")), s.ctx.clone())
        .await
        .unwrap();
    s.api(&["GET channels of ns/channels/gone"]);
    s.provider(&[]).await;
}
