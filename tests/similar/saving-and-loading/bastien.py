# %% save_and_load_model
def save_model(model, path):
    """Only the learned tensors go to disk, never the pickled object."""
    sd = model.state_dict()
    torch.save(sd, str(path))


def load_model(path, device="cpu"):
    rebuilt = MNISTModel()
    rebuilt.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    rebuilt.to(device)
    rebuilt.eval()
    return rebuilt


def predictions_match(model, loaded_model, images):
    for m in (model, loaded_model):
        m.eval()
    with torch.inference_mode():
        return torch.allclose(model(images), loaded_model(images), atol=1e-6)


# %% checkpoint_functions
KEYS = ("epoch", "model_state_dict", "optimizer_state_dict", "loss")


def as_python_float(x):
    # tensors, numpy scalars and floats all end up as a plain float
    return float(x.item()) if hasattr(x, "item") else float(x)


def save_checkpoint(path, model, optimizer, epoch, loss):
    values = (epoch, model.state_dict(), optimizer.state_dict(), as_python_float(loss))
    torch.save(dict(zip(KEYS, values)), path)


def load_checkpoint(path, model, optimizer=None, device="cpu"):
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(ckpt["model_state_dict"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    return ckpt["epoch"], ckpt["loss"]


# %% train_with_checkpoints
def validation_loss(model, loader, loss_fn, device):
    result = evaluate(model, loader, loss_fn, device)
    return result[0] if isinstance(result, (tuple, list)) else result


def train_with_checkpoints(model, optimizer, train_loader, val_loader, num_epochs, checkpoint_dir,
                           save_every=5, device="cpu"):
    out_dir = pathlib.Path(checkpoint_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loss_fn = nn.CrossEntropyLoss()
    history = {"train_loss": [], "val_loss": [], "best_epoch": 0}
    epoch = 0
    while epoch < num_epochs:
        epoch += 1
        tl = train_one_epoch(model, train_loader, optimizer, loss_fn, device)
        vl = validation_loss(model, val_loader, loss_fn, device)
        history["train_loss"].append(tl)
        history["val_loss"].append(vl)
        print(f"epoch {epoch}: train {tl:.4f}  val {vl:.4f}")
        if not epoch % save_every:
            save_checkpoint(out_dir / f"checkpoint_epoch_{epoch}.pth", model, optimizer, epoch, vl)
        if vl <= min(history["val_loss"]):
            history["best_epoch"] = epoch
            save_checkpoint(out_dir / "best.pth", model, optimizer, epoch, vl)
    return history


# %% resume_from_checkpoint
def resume_from_checkpoint(path, lr=1e-3, device="cpu"):
    model = MNISTModel()
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    epochs_done = load_checkpoint(path, model, optimizer=optimizer, device=device)[0]
    return model.train(), optimizer, epochs_done


# %% early_stopping
def train_with_early_stopping(model, optimizer, train_loader, val_loader, max_epochs, patience,
                              checkpoint_path, device="cpu"):
    loss_fn = nn.CrossEntropyLoss()
    history = {"train_loss": [], "val_loss": [], "best_epoch": 0}
    for epoch in range(1, max_epochs + 1):
        history["train_loss"].append(train_one_epoch(model, train_loader, optimizer, loss_fn, device))
        vl = validation_loss(model, val_loader, loss_fn, device)
        history["val_loss"].append(vl)
        if vl < min(history["val_loss"][:-1], default=float("inf")):
            history["best_epoch"] = epoch
            save_checkpoint(checkpoint_path, model, optimizer, epoch, vl)
        elif epoch - history["best_epoch"] >= patience:
            break
    best = torch.load(checkpoint_path, map_location=device, weights_only=True)
    model.load_state_dict(best["model_state_dict"])
    return history
