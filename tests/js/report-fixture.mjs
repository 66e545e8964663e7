// Report documents (schema tb-varscope/1) shared by the frontend tests.

const SEED_TAG = 'my_variable1_0/histogram';

/** The seed case: three custom layers made `my_variable1` in __init__, so all log one tag. */
function seedLane(lane, layer, confidence) {
  return {
    lane,
    variable: `sequential/${layer}/my_variable1`,
    checkpoint_key: `layer_with_weights-${lane}/v1/.ATTRIBUTES/VARIABLE_VALUE`,
    shape: [3],
    elements: 3,
    confidence,
    evidence: `lane ${lane} histograms match checkpoint values of ${layer}.v1 (shape (3,), 3 elements)`,
  };
}

/** @return {object} a report with collisions in two runs, warnings and layer groups */
export function collidingReport() {
  return {
    schema: 'tb-varscope/1',
    logdir: '/tmp/logs',
    summary: {runs: 3, histogram_tags: 9, collisions: 3},
    runs: [
      {
        run: 'resumed',
        event_files: 2,
        histogram_tags: 2,
        checkpoint: null,
        warnings: [{file: 'events.out.tfevents.2.host', offset: 4096, message: 'bad data CRC'}],
        collisions: [
          {
            tag: 'dense/kernel_0/histogram', kind: 'cross-file', writers: 2, steps: 4,
            first_step: 5, last_step: 8,
            files: ['events.out.tfevents.1.host', 'events.out.tfevents.2.host'], lanes: [],
            explanation: 'Two event files of this run both hold the tag at steps 5..8.',
            fix: 'Resume with a new log directory or purge the old file.',
          },
        ],
        groups: [],
      },
      {
        run: 'train',
        event_files: 1,
        histogram_tags: 4,
        checkpoint: {path: '/tmp/logs/train/ckpt/ckpt-1', format: 'tf-checkpoint', variables: 6},
        warnings: [],
        collisions: [
          {
            tag: SEED_TAG, kind: 'same-step', writers: 3, steps: 10, first_step: 0, last_step: 9,
            files: ['events.out.tfevents.1.host'],
            lanes: [
              seedLane(0, 'my_layer', 0.98),
              seedLane(1, 'my_layer_1', 0.97),
              seedLane(2, 'my_layer_2', 0.96),
            ],
            explanation: 'Three layers log a weight named my_variable1:0 under one tag.',
            fix: 'Create the weight in build() so Keras scopes its name under the layer.',
          },
          {
            tag: 'bias_0/histogram', kind: 'same-step', writers: 2, steps: 10, first_step: 0, last_step: 9,
            files: ['events.out.tfevents.1.host'],
            lanes: [
              {lane: 0, variable: null, checkpoint_key: null, shape: null, elements: 4, confidence: 0,
                evidence: 'no checkpoint variable has 4 elements'},
              {lane: 1, variable: null, checkpoint_key: null, shape: null, elements: 4, confidence: 0,
                evidence: 'no checkpoint variable has 4 elements'},
            ],
            explanation: 'Two weights named bias:0 log under one tag.',
            fix: 'Give each weight a unique name.',
          },
        ],
        groups: ['my_layer', 'my_layer_1', 'my_layer_2'].map((layer, lane) => ({
          path: `sequential/${layer}`,
          tags: [SEED_TAG, `sequential/${layer}/my_variable2_0/histogram`],
          variables: [
            {name: 'my_variable1', path: `sequential/${layer}/my_variable1`,
              checkpoint_key: `layer_with_weights-${lane}/v1/.ATTRIBUTES/VARIABLE_VALUE`,
              shape: [3], tag: SEED_TAG, lane},
            {name: 'my_variable2', path: `sequential/${layer}/my_variable2`,
              checkpoint_key: `layer_with_weights-${lane}/v2/.ATTRIBUTES/VARIABLE_VALUE`,
              shape: [lane === 0 ? 5 : 3, 3], tag: `sequential/${layer}/my_variable2_0/histogram`, lane: 0},
          ],
        })),
      },
      {
        run: 'clean',
        event_files: 1,
        histogram_tags: 3,
        checkpoint: null,
        warnings: [],
        collisions: [],
        groups: [],
      },
    ],
  };
}

/** @return {object} a report of two runs where nothing collides */
export function cleanReport() {
  return {
    schema: 'tb-varscope/1',
    logdir: '/tmp/logs',
    summary: {runs: 2, histogram_tags: 5, collisions: 0},
    runs: [
      {run: '.', event_files: 1, histogram_tags: 2, checkpoint: null, warnings: [], collisions: [],
        groups: [{path: 'dense', tags: ['dense/kernel_0/histogram', 'dense/bias_0/histogram'], variables: []}]},
      {run: 'eval', event_files: 1, histogram_tags: 3, checkpoint: null, warnings: [], collisions: [],
        groups: []},
    ],
  };
}

export {SEED_TAG};
