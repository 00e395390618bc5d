# %% device_helpers
def pick_device():
    device = torch.device("cpu")
    if torch.backends.mps.is_available():
        device = torch.device("mps")
    if torch.cuda.is_available():
        device = torch.device("cuda")  # CUDA wins over everything
    return device


def move_batch(images, labels, device):
    moved_images, moved_labels = images.to(device), labels.to(device)
    return moved_images, moved_labels


# %% device_aware_training
def train_one_epoch(model, loader, optimizer, loss_fn, device):
    model.train()
    total = 0.0
    n_samples = 0
    for step, (xb, yb) in enumerate(loader):
        xb, yb = move_batch(xb, yb, device)
        optimizer.zero_grad()
        l = loss_fn(model(xb), yb)
        l.backward()
        optimizer.step()
        total = total + l.item() * len(yb)
        n_samples = n_samples + len(yb)
    mean_loss = total / n_samples
    return mean_loss


def fit(model, train_loader, loss_fn, device, num_epochs, lr=1e-3):
    model.to(device)
    adam = torch.optim.Adam(model.parameters(), lr)
    out = []
    epoch = 0
    while epoch < num_epochs:
        out.append(train_one_epoch(model, train_loader, adam, loss_fn, device))
        epoch += 1
    return out


# %% mixed_precision
def amp_dtype(device):
    if device.type == "cuda":
        return torch.float16
    # CPU and Apple silicon both prefer bfloat16
    return torch.bfloat16


def make_scaler(device):
    enabled = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=enabled)
    return scaler


def amp_train_step(model, images, labels, optimizer, loss_fn, scaler, device):
    images, labels = move_batch(images, labels, device)
    optimizer.zero_grad(set_to_none=True)
    dtype = amp_dtype(device)
    with torch.autocast(device.type, dtype=dtype):
        output = model(images)
    with torch.autocast(device.type, dtype=dtype):
        loss = loss_fn(output, labels)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


# %% checkpoint_across_devices
def save_checkpoint(path, model, optimizer, scaler, epoch):
    state = {}
    state["epoch"] = epoch
    for key, obj in [("model_state_dict", model), ("optimizer_state_dict", optimizer), ("scaler_state_dict", scaler)]:
        state[key] = obj.state_dict()
    torch.save(state, path)


def load_checkpoint(path, model, optimizer, scaler, device):
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model_state_dict"])
    model.to(device)
    optimizer.load_state_dict(state["optimizer_state_dict"])
    scaler_state = state["scaler_state_dict"]
    if scaler_state:
        scaler.load_state_dict(scaler_state)
    return int(state["epoch"])
