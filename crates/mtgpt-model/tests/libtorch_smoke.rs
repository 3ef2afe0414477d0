//! libtorch is linked, runs from a new shell (rpath) and trains: a tiny MLP's AdamW steps
//! lower its loss on a fixed regression problem.
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn libtorch_version_is_the_one_tch_expects() {
    assert_eq!(mtgpt_model::LIBTORCH_VERSION, "2.13.0");
}

#[test]
fn adamw_steps_lower_a_tiny_models_loss() -> anyhow::Result<()> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let net = nn::seq()
        .add(nn::linear(&root / "l1", 8, 32, Default::default()))
        .add_fn(|x| x.gelu("none"))
        .add(nn::linear(&root / "l2", 32, 1, Default::default()));
    let x = Tensor::randn([64, 8], (Kind::Float, Device::Cpu));
    let y = x.sum_dim_intlist(1, true, Kind::Float).sin();
    let mut opt = nn::AdamW::default().build(&vs, 1e-2)?;
    let loss0 = net
        .forward(&x)
        .mse_loss(&y, tch::Reduction::Mean)
        .double_value(&[]);
    for _ in 0..100 {
        let loss = net.forward(&x).mse_loss(&y, tch::Reduction::Mean);
        opt.backward_step(&loss);
    }
    let loss1 = net
        .forward(&x)
        .mse_loss(&y, tch::Reduction::Mean)
        .double_value(&[]);
    assert!(loss1.is_finite());
    assert!(loss1 < 0.2 * loss0, "loss {loss0} -> {loss1}");
    Ok(())
}
