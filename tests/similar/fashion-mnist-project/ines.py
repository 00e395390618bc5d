# %% validation_split
torch.manual_seed(3)
shuffled = torch.randperm(60_000)
n_validation = 9_000
train_images = all_train_images[shuffled[n_validation:]]
val_images = all_train_images[shuffled[:n_validation]]
train_labels = all_train_labels[shuffled[n_validation:]]
val_labels = all_train_labels[shuffled[:n_validation]]
train_loader = TensorLoader(train_images, train_labels, batch_size=64)
val_loader = TensorLoader(val_images, val_labels, batch_size=2048, shuffle=False)
print(f"train {len(train_labels):,} · validation {len(val_labels):,} · test {len(test_labels):,}")

# %% training_functions
def train_one_epoch(model, loader, optimizer, loss_fn, device):
    model.train()
    loss_sum = 0.0
    for images, labels in loader:
        images = images.to(device)
        labels = labels.to(device)
        output = model(images)
        loss = loss_fn(output, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item()
    return loss_sum / len(loader)  # mean of the batch means


def evaluate(model, loader, loss_fn, device):
    model.eval()
    all_logits, all_labels = [], []
    with torch.no_grad():
        for images, labels in loader:
            all_logits.append(model(images.to(device)).cpu())
            all_labels.append(labels)
    logits = torch.cat(all_logits)
    targets = torch.cat(all_labels)
    mean_loss = nn.functional.cross_entropy(logits, targets).item() if loss_fn is None else loss_fn(logits, targets).item()
    accuracy = (logits.argmax(dim=1) == targets).float().mean().item()
    return mean_loss, accuracy

# %% model_definition
def dense_block(n_in, n_out, p):
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.LeakyReLU(0.05), nn.Dropout(p)]


class FashionModel(nn.Module):
    def __init__(self, sizes=(1024, 384), p=0.4):
        super().__init__()
        self.config = {"sizes": tuple(sizes), "p": p}
        dims = [784, *sizes]
        blocks = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks.extend(dense_block(a, b, p))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(dims[-1], 10)

    def forward(self, x):
        x = torch.flatten(x, start_dim=1)
        return self.classifier(self.features(x))


MODEL_CONFIG = {"sizes": (1024, 384), "p": 0.4}

# %% pipeline
def save_best(path, model, optimizer, epoch, accuracy):
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "epoch": epoch, "val_accuracy": float(accuracy), "model_config": model.config}, path)


def train_model(model, optimizer, train_loader, val_loader, max_epochs, patience, checkpoint_path, device):
    loss_fn = nn.CrossEntropyLoss()
    train_loss, val_loss, val_accuracy = [], [], []
    best_epoch = None
    for epoch in range(1, max_epochs + 1):
        train_loss.append(train_one_epoch(model, train_loader, optimizer, loss_fn, device))
        vl, va = evaluate(model, val_loader, loss_fn, device)
        val_loss.append(vl)
        val_accuracy.append(va)
        if best_epoch is None or va > val_accuracy[best_epoch - 1]:
            best_epoch = epoch
            save_best(checkpoint_path, model, optimizer, epoch, va)
        if epoch - best_epoch == patience:
            break
    checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
    model.load_state_dict(checkpoint["model_state_dict"])
    return {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy, "best_epoch": best_epoch}

# %% final_training
BEST_CHECKPOINT = CHECKPOINT_DIR / "fashion_best.pth"
TIME_BUDGET = 120  # seconds of training on a 2-core CPU (Colab's CPU runtime)
torch.manual_seed(0)
start = time.perf_counter()
model = FashionModel(**MODEL_CONFIG)
model.to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
first_run = train_model(model, optimizer, train_loader, val_loader, 10, 3, BEST_CHECKPOINT, device)
for group in optimizer.param_groups:
    group["lr"] /= 10
second_path = CHECKPOINT_DIR / "second_run.pth"
second_run = train_model(model, optimizer, train_loader, val_loader, 5, 2, second_path, device)
if max(second_run["val_accuracy"]) > max(first_run["val_accuracy"]):
    shutil.copy(second_path, BEST_CHECKPOINT)
model.load_state_dict(torch.load(BEST_CHECKPOINT, map_location=device, weights_only=True)["model_state_dict"])
history = {k: first_run[k] + second_run[k] for k in ("train_loss", "val_loss", "val_accuracy")}
history["best_epoch"] = 1 + max(range(len(history["val_accuracy"])), key=history["val_accuracy"].__getitem__)
seconds = time.perf_counter() - start

# %% per_class
def per_class_accuracy(predictions, labels, num_classes=10):
    confusion = torch.zeros(num_classes, num_classes)
    for truth, guess in zip(labels.tolist(), predictions.tolist()):
        confusion[truth, guess] += 1
    per_class = confusion.diag() / confusion.sum(dim=1)
    return per_class.float()
