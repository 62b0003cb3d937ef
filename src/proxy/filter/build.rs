//! What one conf's filters are built with besides their own keys: the state kept from the conf
//! before, the series they count in, the clusters they may call, and the background tasks they
//! ask for — started once the conf is served, never for a conf that is only checked.

use super::kept::{Keeper, Kept};
use crate::config::ClusterConfig;
use crate::metrics::filters::FilterSeries;
use crate::upstream::client::ClusterClient;
use crate::upstream::Clusters;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A filter's background task (see `FilterSetup::spawn`).
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The clusters a filter may call.
pub(crate) enum Reach<'a> {
    /// A conf only checked: names are checked, nothing is sent.
    Checked(&'a [ClusterConfig]),
    /// The clusters of the conf about to be served.
    Running(&'a Clusters),
}

/// Everything one conf's filters are built with.
pub(crate) struct Build<'a> {
    pub(crate) keeper: Keeper<'a>,
    pub(crate) series: &'a FilterSeries,
    clusters: Reach<'a>,
    tasks: RefCell<Vec<Task>>,
}

impl<'a> Build<'a> {
    /// Builds after `previous` (the running conf's kept state), or afresh.
    pub(crate) fn new(
        previous: Option<&'a Kept>,
        series: &'a FilterSeries,
        clusters: Reach<'a>,
    ) -> Build<'a> {
        Build {
            keeper: Keeper::new(previous),
            series,
            clusters,
            tasks: RefCell::default(),
        }
    }

    /// What the filters built keep for the next reload, and the tasks they asked for.
    pub(crate) fn finish(self) -> (Kept, Tasks) {
        let tasks = Tasks(Mutex::new(self.tasks.into_inner()));
        (self.keeper.into_kept(), tasks)
    }

    /// A client of the cluster called `name`, or why there is none (the conf's clusters named).
    pub(crate) fn cluster(&self, name: &str) -> Result<ClusterClient, String> {
        let found = match &self.clusters {
            Reach::Checked(confs) => confs
                .iter()
                .any(|c| c.name == name)
                .then(|| ClusterClient::checked_only(name)),
            Reach::Running(clusters) => clusters
                .iter()
                .find(|c| c.name() == name)
                .map(|c| ClusterClient::new(c.clone())),
        };
        found.ok_or_else(|| {
            let known: Vec<&str> = match &self.clusters {
                Reach::Checked(confs) => confs.iter().map(|c| c.name.as_str()).collect(),
                Reach::Running(clusters) => clusters.iter().map(|c| c.name()).collect(),
            };
            let closest = known
                .iter()
                .map(|k| (strsim::levenshtein(name, k), *k))
                .min()
                .filter(|(distance, _)| *distance <= 3)
                .map(|(_, k)| format!(" (did you mean {k}?)"))
                .unwrap_or_default();
            format!(
                "unknown cluster `{name}`{closest}; gateway.clusters has: {}",
                known.join(", ")
            )
        })
    }

    /// Queues a task to start once the conf is served.
    pub(crate) fn spawn(&self, task: Task) {
        self.tasks.borrow_mut().push(task);
    }
}

/// The background tasks of one conf's filters, until they are started.
#[derive(Default)]
pub(crate) struct Tasks(Mutex<Vec<Task>>);

impl Tasks {
    /// How many wait to be started.
    pub(crate) fn pending(&self) -> usize {
        self.0.lock().map_or(0, |t| t.len())
    }

    /// Starts every task on the tokio runtime this is called on; without one, none starts
    /// (and the log says so). Returns how many started.
    pub(crate) fn start(&self) -> usize {
        let Ok(mut tasks) = self.0.lock() else {
            return 0;
        };
        if tasks.is_empty() {
            return 0;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            log::error!(
                "filters: {} background task(s) not started: no tokio runtime",
                tasks.len()
            );
            return 0;
        };
        let started = tasks.len();
        for task in tasks.drain(..) {
            runtime.spawn(task);
        }
        log::info!("filters: {started} background task(s) started");
        started
    }
}
