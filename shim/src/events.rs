//! Publishing task events to containerd, reconnecting when containerd
//! restarted since the last event.

use std::sync::Mutex;

use containerd_shim::event::Event;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::publisher::RemotePublisher;

/// containerd's event service at its TTRPC address.
pub struct Publisher {
    address: String,
    namespace: String,
    client: Mutex<Option<RemotePublisher>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("address", &self.address)
            .finish()
    }
}

impl Publisher {
    /// A publisher for `namespace`, already connected through `client`.
    pub fn new(address: String, namespace: String, client: RemotePublisher) -> Publisher {
        Publisher {
            address,
            namespace,
            client: Mutex::new(Some(client)),
        }
    }

    /// Sends `event`; on failure reconnects once and retries (containerd
    /// may have restarted). An event that cannot be delivered is logged:
    /// containerd learns the state again through the Task service.
    pub fn publish<E: Event + Clone + 'static>(&self, event: E) {
        let topic = event.topic();
        let mut g = self.client.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if g.is_none() {
                match RemotePublisher::new(&self.address) {
                    Ok(c) => *g = Some(c),
                    Err(e) => {
                        log::warn!("event {topic}: connect to {}: {e}", self.address);
                        return;
                    }
                }
            }
            let Some(c) = g.as_ref() else { return };
            match c.publish(
                Context::default(),
                &topic,
                &self.namespace,
                Box::new(event.clone()),
            ) {
                Ok(()) => return,
                Err(e) => {
                    log::warn!("event {topic} (attempt {}): {e}", attempt + 1);
                    *g = None;
                }
            }
        }
    }
}
