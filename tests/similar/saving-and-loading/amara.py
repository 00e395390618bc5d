# %% save_and_load_model
def save_model(model, path):
    torch.save(model.state_dict(), path)


def load_model(path, device="cpu"):
    net = MNISTModel()
    weights = torch.load(path, map_location=device, weights_only=True)
    net.load_state_dict(weights)
    return net.to(device).eval()


def predictions_match(model, loaded_model, images):
    model.eval()
    loaded_model.eval()
    with torch.no_grad():
        first = model(images)
        second = loaded_model(images)
    return torch.allclose(first, second)


# %% checkpoint_functions
def save_checkpoint(path, model, optimizer, epoch, loss):
    if isinstance(loss, torch.Tensor):
        loss = loss.item()
    state = dict(
        epoch=epoch,
        model_state_dict=model.state_dict(),
        optimizer_state_dict=optimizer.state_dict(),
        loss=float(loss),
    )
    torch.save(state, path)


def load_checkpoint(path, model, optimizer=None, device="cpu"):
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model_state_dict"])
    if optimizer:
        optimizer.load_state_dict(state["optimizer_state_dict"])
    return state["epoch"], state["loss"]


# %% train_with_checkpoints
def train_with_checkpoints(model, optimizer, train_loader, val_loader, num_epochs, checkpoint_dir,
                           save_every=5, device="cpu"):
    folder = pathlib.Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    criterion = nn.CrossEntropyLoss()
    train_losses, val_losses = [], []
    lowest = None
    best_epoch = None
    for epoch in range(1, num_epochs + 1):
        train_losses.append(train_one_epoch(model, train_loader, optimizer, criterion, device))
        current = evaluate(model, val_loader, criterion, device)
        if isinstance(current, tuple):
            current = current[0]
        val_losses.append(current)
        if epoch % save_every == 0:
            save_checkpoint(folder / f"checkpoint_epoch_{epoch}.pth", model, optimizer, epoch, current)
        if lowest is None or current < lowest:
            lowest = current
            best_epoch = epoch
            save_checkpoint(folder / "best.pth", model, optimizer, epoch, current)
    return {"train_loss": train_losses, "val_loss": val_losses, "best_epoch": best_epoch}


# %% resume_from_checkpoint
def resume_from_checkpoint(path, lr=1e-3, device="cpu"):
    net = MNISTModel().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    done, _ = load_checkpoint(path, net, opt, device)
    net.train()
    return net, opt, done


# %% early_stopping
def train_with_early_stopping(model, optimizer, train_loader, val_loader, max_epochs, patience,
                              checkpoint_path, device="cpu"):
    criterion = nn.CrossEntropyLoss()
    record = {"train_loss": [], "val_loss": [], "best_epoch": None}
    lowest = math.inf
    waited = 0
    for epoch in range(1, max_epochs + 1):
        record["train_loss"].append(train_one_epoch(model, train_loader, optimizer, criterion, device))
        current = evaluate(model, val_loader, criterion, device)
        current = current[0] if isinstance(current, tuple) else current
        record["val_loss"].append(current)
        if current < lowest:
            lowest, waited = current, 0
            record["best_epoch"] = epoch
            save_checkpoint(checkpoint_path, model, optimizer, epoch, current)
        else:
            waited += 1
            if waited == patience:
                print(f"no improvement for {patience} epochs: stopping after epoch {epoch}")
                break
    load_checkpoint(checkpoint_path, model, optimizer, device)
    return record
