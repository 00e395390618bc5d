# %% device_helpers
PREFERENCE = ("cuda", "mps")


def pick_device():
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    for kind in PREFERENCE:
        if available[kind]:
            return torch.device(kind)
    return torch.device("cpu")


def move_batch(images, labels, device):
    return tuple(t.to(device) for t in (images, labels))


# %% device_aware_training
def train_one_epoch(model, loader, optimizer, loss_fn, device):
    model.train()
    batch_losses = []
    for images, labels in loader:
        images, labels = move_batch(images, labels, device)
        predictions = model(images)
        batch_loss = loss_fn(predictions, labels)
        optimizer.zero_grad()
        batch_loss.backward()
        optimizer.step()
        batch_losses.append(float(batch_loss))
    # the mean of the batch means
    return sum(batch_losses) / len(batch_losses)


def fit(model, train_loader, loss_fn, device, num_epochs, lr=1e-3):
    model.to(device)
    optimizer = torch.optim.Adam(params=model.parameters(), lr=lr)
    history = []
    for epoch in range(num_epochs):
        epoch_loss = train_one_epoch(model, train_loader, optimizer, loss_fn, device)
        history.append(epoch_loss)
        print(f"[{epoch + 1}/{num_epochs}] loss={epoch_loss:.3f}")
    return history


# %% mixed_precision
LOW_PRECISION = {"cuda": torch.float16, "cpu": torch.bfloat16, "mps": torch.bfloat16}


def amp_dtype(device):
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    return LOW_PRECISION.get(kind, torch.bfloat16)


def make_scaler(device):
    kind = device.type if isinstance(device, torch.device) else str(device)
    return torch.amp.GradScaler("cuda", enabled=(kind == "cuda"))


def amp_train_step(model, images, labels, optimizer, loss_fn, scaler, device):
    x, y = move_batch(images, labels, device)
    optimizer.zero_grad()
    ctx = torch.autocast(device_type=device.type, dtype=amp_dtype(device))
    with ctx:
        loss = loss_fn(model(x), y)
    scaled = scaler.scale(loss)
    scaled.backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach().cpu())


# %% checkpoint_across_devices
def save_checkpoint(path, model, optimizer, scaler, epoch):
    torch.save(
        {
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "scaler_state_dict": scaler.state_dict() if scaler is not None else {},
            "epoch": int(epoch),
        },
        path,
    )


def load_checkpoint(path, model, optimizer, scaler, device):
    saved = torch.load(path, weights_only=True, map_location=torch.device(device))
    for target, key in ((model, "model_state_dict"), (optimizer, "optimizer_state_dict")):
        target.load_state_dict(saved[key])
    scaler_state = saved.get("scaler_state_dict") or {}
    if scaler_state and scaler is not None:
        scaler.load_state_dict(scaler_state)
    return saved["epoch"]
