import streamlit as st

from lenet_app import evaluation as eval_view
from lenet_app import feature_views, models
from lenet_app.datasets import DATASET_LABELS, get_data, missing_data_markdown

st.title("Evaluate")
st.markdown("How well does a model do on the **test images it never saw in training**, and where does it go wrong?")

entry = models.picker()
if entry is None:
    st.stop()
dataset_label = DATASET_LABELS.get(entry.dataset, entry.dataset)

with st.spinner(f"Loading {dataset_label}…"):
    data, problem = get_data(entry.dataset)
if data is None:
    st.error(f"**{dataset_label} is missing**, so this model cannot be evaluated yet.", icon=":material/error:")
    st.markdown(missing_data_markdown(problem))
    st.stop()

with st.spinner(f"Running the model on {len(data.test_labels):,} test images…"):
    ev = eval_view.evaluation_for(entry, data)

mistakes = ev.mistakes
c1, c2, c3 = st.columns(3)
c1.metric("Test accuracy", f"{ev.accuracy:.1%}",
          help=f"On {ev.count:,} test images; computed once in {ev.seconds:.1f} s, then reused.")
c2.metric("Mistakes", f"{len(mistakes):,} of {ev.count:,}")
c3.metric("Test loss", f"{ev.loss:.3f}")

left, right = st.columns([2, 1], gap="large")
with left:
    st.subheader("Confusion matrix")
    st.caption("Rows: the true class. Columns: what the model said. The diagonal is correct; every other "
               "number counts images mistaken for another class. **Click a cell** to see its images below.")
    eval_view.confusion_chart(ev)
with right:
    st.subheader("Accuracy per class")
    st.caption("Share of each class's test images the model got right.")
    st.plotly_chart(eval_view.per_class_figure(ev), key="per_class", config={"displayModeBar": False})
    feature_views.open_map_button()

heading = st.container()  # filled once the filters say what the gallery shows
true_class, predicted, order, seed = eval_view.gallery_filters(ev)
correct = true_class is not None and true_class == predicted  # a diagonal cell: correct answers
kind = "correct answers" if correct else "mistakes"
with heading:
    st.subheader(kind.capitalize())
    top = eval_view.top_confusions(ev)
    if top and not correct:
        st.markdown("Most often confused: " + "; ".join(
            f"**{ev.classes[t]}** taken for **{ev.classes[p]}** ({n} time{'s' * (n > 1)})"
            for t, p, n in top) + ".")

page = eval_view.current_page(eval_view.select_images(ev, true_class, predicted, order, seed),
                              (entry.key, true_class, predicted, order, seed))
if not len(mistakes) and not correct:
    st.success("No mistakes on the test set.")
    st.stop()
if page.total == 0:
    st.info(f"No {kind} match these filters.")
    st.stop()
if correct:
    st.info(f"A diagonal cell: these are **correct answers**, {ev.classes[true_class]} recognised as "
            f"{ev.classes[true_class]}. Pick two different classes to see mistakes.", icon=":material/check:")
st.markdown(f"**{page.span}** {kind}. Open one in Activations to see what each layer made of it and where it looked.")
eval_view.pager(page)

COLUMNS = 4
for row in range(0, len(page.indices), COLUMNS):
    for col, index in zip(st.columns(COLUMNS), page.indices[row:row + COLUMNS]):
        index = int(index)
        with col.container(border=True):
            picture, words = st.columns(2, vertical_alignment="center")
            picture.image(eval_view.thumbnail(data.test_images[index]), width="stretch")
            words.markdown(f"true **{ev.classes[ev.labels[index]]}**  \n"
                           f"said **{ev.classes[ev.predictions[index]]}**  \n"
                           f"{ev.confidence[index]:.0%} sure")
            if st.button("Open in Activations", key=f"evaluate_open_{index}", icon=":material/grid_view:",
                         width="stretch"):
                st.session_state["activations_request"] = {"model_key": entry.key, "dataset": data.name,
                                                           "index": index, "saliency": True}
                st.switch_page("views/activations.py")
eval_view.pager(page, "_bottom")
