//! Drives the IO-free core by hand against the Transit model and prints every output.
//!
//! This is the run-loop contract in thirty lines: feed an input, drain outputs until
//! `Output::Timeout`, carry out each effect, repeat. Run it with
//! `cargo run -p bao-kms-examples --bin drive_core`.

use std::time::{Duration, Instant};

use bao_kms_core::{Input, KmsRequest, Output, Plaintext, Provider, RequestId, StoredState};
use bao_kms_testkit::sim;
use bao_kms_testkit::transit_model::TransitModel;

fn main() -> anyhow::Result<()> {
    #[expect(clippy::disallowed_methods, reason = "the example's only clock read")]
    let mut now = Instant::now();
    let mut wall_unix = sim::START_UNIX;
    let mut transit = TransitModel::new(1, wall_unix - 60);
    let mut disk = StoredState::default();
    let mut provider = Provider::new(sim::config(0), now, &disk)?;
    let mut next_wake = now;

    // Let the provider bootstrap, then ask for Status and an Encrypt.
    let script = [
        (Duration::ZERO, None),
        (Duration::from_secs(1), Some(KmsRequest::Status)),
        (
            Duration::ZERO,
            Some(KmsRequest::Encrypt {
                plaintext: Plaintext::new(vec![1; 32]),
            }),
        ),
    ];
    for (index, (step, request)) in script.into_iter().enumerate() {
        now += step;
        wall_unix += i64::try_from(step.as_secs())?;
        let input = match request {
            Some(request) => {
                let id = RequestId(u64::try_from(index)?);
                Input::Request {
                    id,
                    deadline: now + Duration::from_secs(3),
                    request,
                }
            }
            None => Input::Timeout,
        };
        println!("--> {input:?}");
        provider.handle_input(now, input);
        loop {
            let output = provider.poll_output();
            println!("<-- {output:?}");
            match output {
                Output::CallTransit { call, request, .. } => {
                    let result = transit.execute(&request);
                    let input = Input::TransitCompleted {
                        call,
                        result,
                        wall_clock_unix: wall_unix,
                    };
                    provider.handle_input(now, input);
                }
                Output::SaveState {
                    write,
                    state,
                    checkpoint,
                } => {
                    disk.state = Some(state.into_bytes());
                    disk.checkpoint = Some(checkpoint.into_bytes());
                    provider.handle_input(
                        now,
                        Input::StateSaved {
                            write,
                            result: Ok(()),
                        },
                    );
                }
                Output::Respond { .. } | Output::Event(_) => {}
                Output::Timeout(at) => {
                    next_wake = at;
                    break;
                }
            }
        }
    }
    let wake_in = next_wake.saturating_duration_since(now);
    println!(
        "next wake-up in {wake_in:?}; health: {:?}",
        provider.health(now)
    );
    Ok(())
}
